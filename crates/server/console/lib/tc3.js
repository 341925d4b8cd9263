// TC3-HMAC-SHA256, the signature of Tencent Cloud API 3.0, computed in the
// browser with WebCrypto: the page signs every call with the user's own
// keys, as the SDKs do, and the keys never leave the page.

const encoder = new TextEncoder();

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function sha256Hex(text) {
  return hex(await crypto.subtle.digest("SHA-256", encoder.encode(text)));
}

async function hmac(key, text) {
  const raw = typeof key === "string" ? encoder.encode(key) : key;
  const imported = await crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", imported, encoder.encode(text)));
}

/**
 * The headers of a signed `POST /` call. A fresh `X-TC-TraceId` is signed
 * with each call, so no two calls sign alike (the server refuses a
 * signature it has seen before for a call that changes something).
 * @param {{secretId: string, secretKey: string}} keys
 * @param {string} host the Host header the browser sends (with its port)
 * @param {string} body the JSON body, exactly as sent
 * @param {number} timestamp Unix seconds
 */
export async function signedHeaders(keys, host, body, timestamp) {
  const service = "mongodb";
  const contentType = "application/json";
  const traceId = crypto.randomUUID();
  const date = new Date(timestamp * 1000).toISOString().slice(0, 10);
  const signed = "content-type;host;x-tc-traceid";
  const canonicalRequest = [
    "POST",
    "/",
    "",
    `content-type:${contentType}\nhost:${host}\nx-tc-traceid:${traceId}\n`,
    signed,
    await sha256Hex(body),
  ].join("\n");
  const scope = `${date}/${service}/tc3_request`;
  const stringToSign = ["TC3-HMAC-SHA256", String(timestamp), scope, await sha256Hex(canonicalRequest)].join("\n");
  const signingKey = await hmac(await hmac(await hmac(`TC3${keys.secretKey}`, date), service), "tc3_request");
  const signature = hex(await hmac(signingKey, stringToSign));
  return {
    "Content-Type": contentType,
    Authorization:
      `TC3-HMAC-SHA256 Credential=${keys.secretId}/${scope}, SignedHeaders=${signed}, Signature=${signature}`,
    "X-TC-Timestamp": String(timestamp),
    "X-TC-TraceId": traceId,
  };
}
