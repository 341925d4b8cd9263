// Following an asynchronous request (a backup's AsyncRequestId, a
// restore's FlowId) through DescribeAsyncRequestInfo to its end.

import { call } from "./api.js";
import { errorBox, h, replace } from "./dom.js";

const POLL_MS = 1000;

/**
 * Polls request `id` every second, showing its progress in `notice` under
 * the name `label(info)`, until it succeeds or fails (or `stopped()`, when
 * the page is left). Resolves to the last answer, or null.
 */
export async function follow(id, notice, label, stopped) {
  for (;;) {
    if (stopped()) return null;
    let info;
    try {
      info = await call("DescribeAsyncRequestInfo", { AsyncRequestId: String(id) });
    } catch (error) {
      replace(notice, errorBox(error));
      return null;
    }
    if (info.Status === "success") {
      replace(notice, h("div", { class: "ok" }, `${label(info)} succeeded.`));
      return info;
    }
    if (info.Status === "failed") {
      replace(notice, h("div", { class: "error", role: "alert" }, `${label(info)} failed: ${info.FailureReason}`));
      return info;
    }
    const progress = info.Progress || 0;
    replace(
      notice,
      h("div", { class: "progress-line" }, `${label(info)}: ${info.Status} `, h("progress", { max: 100, value: progress }), ` ${progress}%`),
    );
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}
