// Sign-in: SecretId, SecretKey and region, checked with one signed call.
// A key the API refuses says so; a key that is right but whose policy does
// not allow listing instances still signs in (the pages then show what the
// policy refuses, as the API words it).

import { call, signIn } from "../lib/api.js";
import { busy, errorBox, h, replace } from "../lib/dom.js";

const REGIONS = [
  "ap-guangzhou", "ap-shanghai", "ap-nanjing", "ap-beijing", "ap-chengdu", "ap-chongqing",
  "ap-hongkong", "ap-singapore", "ap-jakarta", "ap-bangkok", "ap-seoul", "ap-tokyo", "ap-mumbai",
  "na-siliconvalley", "na-ashburn", "eu-frankfurt", "sa-saopaulo", "ap-shanghai-fsi", "ap-shenzhen-fsi",
];

/** Codes that mean the keys, or the region, are not right for signing in. */
function refusesSignIn(error) {
  return error.wrongKeys || error.code === "UnsupportedRegion" || error.code === "NetworkError";
}

export function render(main, { navigate }) {
  const secretId = h("input", { id: "secret-id", name: "secret-id", required: true, autocomplete: "username", spellcheck: "false" });
  const secretKey = h("input", { id: "secret-key", name: "secret-key", type: "password", required: true, autocomplete: "current-password" });
  const region = h("input", { id: "region", name: "region", required: true, list: "regions", value: "ap-guangzhou", spellcheck: "false" });
  const status = h("div", { class: "status", "aria-live": "polite" });
  const submit = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h(
    "form",
    {
      class: "signin",
      onsubmit: (event) => {
        event.preventDefault();
        const keys = { secretId: secretId.value.trim(), secretKey: secretKey.value, region: region.value.trim() };
        busy(submit, async () => {
          replace(status);
          try {
            await call("DescribeDBInstances", { Limit: 1 }, keys);
          } catch (error) {
            if (refusesSignIn(error)) {
              replace(
                status,
                error.wrongKeys
                  ? h("div", { class: "error", role: "alert" }, h("strong", {}, "Wrong keys. "), `${error.code}: ${error.message}`)
                  : errorBox(error),
              );
              return;
            }
          }
          signIn(keys);
          navigate("#/instances");
        });
      },
    },
    h("h1", {}, "mongobak"),
    h("p", { class: "hint" }, "Sign in with an API key pair of your account. The keys stay in this tab: every call is signed here and the keys are never sent."),
    h("label", { for: "secret-id" }, "SecretId"),
    secretId,
    h("label", { for: "secret-key" }, "SecretKey"),
    secretKey,
    h("label", { for: "region" }, "Region"),
    region,
    h("datalist", { id: "regions" }, REGIONS.map((r) => h("option", { value: r }))),
    submit,
    status,
  );
  replace(main, form);
  secretId.focus();
  return null;
}
