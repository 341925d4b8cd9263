// Calls a mongodb action with the official Node.js SDK and prints one JSON
// line: {"ok": true, "response": {...}} or {"ok": false, "code", "message",
// "requestId"}. Exit status 0 either way; 2 when the SDK raised something
// without an error code (network failure, ...).
//
// Settings come from the environment:
//   MB_ENDPOINT    "127.0.0.1:PORT" (required)
//   MB_SECRET_ID, MB_SECRET_KEY (required)
//   MB_REGION      default "ap-guangzhou"; "" sends none
//   MB_METHOD      POST (default) or GET
//   MB_SIGN        TC3-HMAC-SHA256 (default), HmacSHA256 or HmacSHA1
//   MB_ACTION      default DescribeDBInstances
//   MB_PARAMS      JSON object of request parameters, default {}
//   MB_RESOLVE_TO  if set, MB_ENDPOINT's host name is resolved to this IP
//                  (to sign with a real service name such as
//                  mongodb.tencentcloudapi.com:PORT)
//   MB_ZERO_NONCE  if set, Math.random returns 0, so the v1 Nonce is 0
"use strict";

if (process.env.MB_ZERO_NONCE) {
  Math.random = () => 0;
}

const http = require("http");
const { Client } = require("tencentcloud-sdk-nodejs-mongodb").mongodb.v20190725;

function env(name, fallback) {
  const value = process.env[name];
  if (value === undefined) {
    if (fallback === undefined) {
      console.error(`${name} is required`);
      process.exit(3);
    }
    return fallback;
  }
  return value;
}

async function main() {
  const httpProfile = {
    endpoint: env("MB_ENDPOINT"),
    protocol: "http://",
    reqMethod: env("MB_METHOD", "POST"),
    reqTimeout: 15,
  };
  const resolveTo = process.env.MB_RESOLVE_TO;
  if (resolveTo) {
    httpProfile.agent = new http.Agent({
      lookup: (hostname, options, callback) => {
        if (options && options.all) {
          callback(null, [{ address: resolveTo, family: 4 }]);
        } else {
          callback(null, resolveTo, 4);
        }
      },
    });
  }
  const region = env("MB_REGION", "ap-guangzhou");
  const client = new Client({
    credential: { secretId: env("MB_SECRET_ID"), secretKey: env("MB_SECRET_KEY") },
    region: region === "" ? undefined : region,
    profile: { signMethod: env("MB_SIGN", "TC3-HMAC-SHA256"), httpProfile },
  });
  const action = env("MB_ACTION", "DescribeDBInstances");
  const params = JSON.parse(env("MB_PARAMS", "{}"));
  try {
    const response = await client.request(action, params);
    process.stdout.write(JSON.stringify({ ok: true, response }) + "\n");
  } catch (err) {
    const out = {
      ok: false,
      code: err.code || null,
      message: err.message || String(err),
      requestId: err.requestId || null,
    };
    process.stdout.write(JSON.stringify(out) + "\n");
    if (!err.code) {
      process.exitCode = 2;
    }
  }
}

main();
