// The console's shell: the session, the header, and a hash router that
// shows one page at a time (each page module renders into <main> and
// answers a function that stops its timers when the page is left).

import { session, signOut } from "./lib/api.js";
import { h, replace } from "./lib/dom.js";
import * as signin from "./pages/signin.js";
import * as instances from "./pages/instances.js";
import * as backups from "./pages/backups.js";
import * as downloads from "./pages/downloads.js";
import * as rules from "./pages/rules.js";
import * as restore from "./pages/restore.js";

const INSTANCE_PAGES = { backups, downloads, rules, restore };
const INSTANCE_TABS = [
  ["backups", "Backups"],
  ["downloads", "Downloads"],
  ["rules", "Backup rules"],
  ["restore", "Restore"],
];

const app = document.getElementById("app");
let leave = null;

/** `#/a/b?x=1` as `{parts: ["a", "b"], query: URLSearchParams}`. */
function route() {
  const [path, query] = location.hash.replace(/^#\/?/, "").split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(query || "") };
}

export function navigate(hash) {
  if (location.hash === hash) show();
  else location.hash = hash;
}

function header(keys) {
  return h(
    "header",
    { class: "top" },
    h("a", { class: "brand", href: "#/instances" }, "mongobak"),
    h("nav", { "aria-label": "Main" }, h("a", { href: "#/instances" }, "Instances")),
    h(
      "div",
      { class: "who" },
      h("span", { class: "region", title: "Region" }, keys.region),
      h("span", { class: "secret-id", title: "SecretId" }, `${keys.secretId.slice(0, 8)}…`),
      h(
        "button",
        {
          type: "button",
          class: "link",
          onclick: () => {
            signOut();
            navigate("#/signin");
          },
        },
        "Sign out",
      ),
    ),
  );
}

function tabs(instanceId, current) {
  return h(
    "nav",
    { class: "tabs", "aria-label": "Instance" },
    INSTANCE_TABS.map(([page, label]) =>
      h(
        "a",
        {
          href: `#/instances/${encodeURIComponent(instanceId)}/${page}`,
          "aria-current": page === current ? "page" : false,
        },
        label,
      ),
    ),
  );
}

/** WebCrypto, which signs the calls, exists only in secure contexts. */
function insecure() {
  return !window.isSecureContext || !window.crypto || !window.crypto.subtle;
}

function show() {
  if (insecure()) {
    replace(
      app,
      h(
        "main",
        { id: "main", class: "signin" },
        h("h1", {}, "mongobak"),
        h(
          "p",
          { class: "error", role: "alert" },
          "The console signs every call with your keys in the browser, and browsers allow that only on HTTPS " +
            "or on this machine (localhost). Serve mongobak over HTTPS ([server] tls_cert_file and tls_key_file, " +
            "or a TLS proxy that keeps the Host header), or open it through an SSH tunnel to localhost.",
        ),
      ),
    );
    return;
  }
  if (leave) {
    leave();
    leave = null;
  }
  const keys = session();
  const { parts, query } = route();
  if (!keys || parts[0] === "signin") {
    const main = h("main", { id: "main" });
    replace(app, main);
    leave = signin.render(main, { navigate, query });
    return;
  }
  const main = h("main", { id: "main" });
  if (parts[0] === "instances" && parts[1] && INSTANCE_PAGES[parts[2]]) {
    const instanceId = parts[1];
    replace(
      app,
      header(keys),
      h(
        "div",
        { class: "crumbs" },
        h("a", { href: "#/instances" }, "Instances"),
        " / ",
        h("span", { class: "instance-id" }, instanceId),
      ),
      tabs(instanceId, parts[2]),
      main,
    );
    leave = INSTANCE_PAGES[parts[2]].render(main, { navigate, query, instanceId });
    return;
  }
  if (parts[0] !== "instances" || parts.length > 1) {
    navigate("#/instances");
    return;
  }
  replace(app, header(keys), main);
  leave = instances.render(main, { navigate, query });
}

window.addEventListener("hashchange", show);
show();
