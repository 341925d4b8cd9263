// Calls of the mongodb API (version 2019-07-25) to the server that served
// the page, signed with the keys of the session, and the session itself:
// the keys live in sessionStorage only, gone when the tab closes or the
// user signs out.

import { signedHeaders } from "./tc3.js";

const SESSION_KEY = "mongobak.session";

/** An error answered by the API: its code and message, as the SDKs show them. */
export class ApiError extends Error {
  constructor(code, message, requestId) {
    super(message);
    this.code = code;
    this.requestId = requestId || "";
  }

  /** Whether the keys themselves were refused. */
  get wrongKeys() {
    return this.code.startsWith("AuthFailure");
  }
}

/** The signed-in session: `{secretId, secretKey, region}`, or null. */
export function session() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
    return saved && saved.secretId && saved.secretKey && saved.region ? saved : null;
  } catch {
    return null;
  }
}

export function signIn(keys) {
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(keys));
}

export function signOut() {
  sessionStorage.removeItem(SESSION_KEY);
}

/**
 * Calls `action` with `params` under `keys` (the session's by default);
 * resolves to the `Response` object, rejects with an ApiError.
 */
export async function call(action, params = {}, keys = session()) {
  if (!keys) {
    throw new ApiError("AuthFailure.SecretIdNotFound", "Sign in first.");
  }
  const body = JSON.stringify(params);
  const timestamp = Math.floor(Date.now() / 1000);
  const headers = await signedHeaders(keys, location.host, body, timestamp);
  headers["X-TC-Action"] = action;
  headers["X-TC-Version"] = "2019-07-25";
  headers["X-TC-Region"] = keys.region;
  let answer;
  try {
    const response = await fetch("/", { method: "POST", headers, body, cache: "no-store" });
    answer = await response.json();
  } catch (e) {
    throw new ApiError("NetworkError", `The server could not be reached: ${e.message}`);
  }
  const result = answer && answer.Response;
  if (!result) {
    throw new ApiError("InternalError", "The server answered something that is not an API response.");
  }
  if (result.Error) {
    throw new ApiError(result.Error.Code, result.Error.Message, result.RequestId);
  }
  return result;
}
