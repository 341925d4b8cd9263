// An instance's backup rule: DescribeBackupRules shown as a form,
// SetBackupRules on save. The API checks every value; a refusal is shown
// at the field it names.

import { call } from "../lib/api.js";
import { busy, errorBox, h, replace, size } from "../lib/dom.js";

const WEEKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/** The parameter an error message names in backquotes, if any. */
function namedParameter(message) {
  const match = /`([A-Za-z]+)(?:\.\d+)*`/.exec(message || "");
  return match ? match[1] : null;
}

function field(param, label, input, hint) {
  const id = `rule-${param}`;
  input.id = id;
  input.name = param;
  return h(
    "div",
    { class: "field", dataset: { param } },
    h("label", { for: id }, label),
    input,
    hint ? h("small", { class: "hint" }, hint) : null,
    h("div", { class: "field-error", role: "alert" }),
  );
}

function numberOrText(input) {
  const text = input.value.trim();
  return /^-?\d+$/.test(text) ? Number(text) : text;
}

export function render(main, { instanceId }) {
  replace(main, h("h1", {}, "Backup rules"), h("p", { class: "loading" }, "Loading the rule…"));
  call("DescribeBackupRules", { InstanceId: instanceId })
    .then((rule) => show(main, instanceId, rule))
    .catch((error) => replace(main, h("h1", {}, "Backup rules"), errorBox(error)));
  return null;
}

function show(main, instanceId, rule) {
  const notice = h("div", { class: "status", "aria-live": "polite" });
  const hour = h("select", {}, Array.from({ length: 24 }, (_, n) => h("option", { value: n, selected: n === rule.BackupTime }, `${String(n).padStart(2, "0")}:00`)));
  const frequency = h(
    "select",
    {},
    h("option", { value: 24, selected: rule.BackupFrequency === 24 }, "once a day"),
    h("option", { value: 12, selected: rule.BackupFrequency === 12 }, "twice a day"),
  );
  const active = new Set(rule.ActiveWeekdays.split(",").filter(Boolean).map(Number));
  const weekdays = h(
    "span",
    { class: "weekdays" },
    WEEKDAYS.map((name, n) => h("label", { class: "check" }, h("input", { type: "checkbox", value: n, checked: active.has(n) }), ` ${name}`)),
  );
  const retention = h("input", { inputmode: "numeric", value: rule.BackupSaveTime, size: 5 });
  const oplogDays = h("input", { inputmode: "numeric", value: rule.OplogExpiredDays, size: 5 });
  const notify = h("input", { type: "checkbox", checked: rule.Notify });
  const interval = h(
    "select",
    {},
    h("option", { value: "", selected: !rule.LongTermInterval }, "off"),
    h("option", { value: "weekly", selected: rule.LongTermInterval === "weekly" }, "weekly"),
    h("option", { value: "monthly", selected: rule.LongTermInterval === "monthly" }, "monthly"),
  );
  const longDays = h("input", { value: rule.LongTermActiveDays, placeholder: "e.g. 1 or 1,15", spellcheck: "false" });
  const longExpiry = h("input", { inputmode: "numeric", value: rule.LongTermExpiredDays, size: 5 });
  const threshold = h("input", { inputmode: "numeric", value: rule.AlertThreshold, size: 5 });
  const save = h("button", { type: "submit", class: "primary" }, "Save rule");
  const form = h(
    "form",
    {
      class: "rules",
      onsubmit: (event) => {
        event.preventDefault();
        for (const slot of form.querySelectorAll(".field-error")) replace(slot);
        const params = {
          InstanceId: instanceId,
          BackupMethod: 0,
          BackupTime: Number(hour.value),
          BackupFrequency: Number(frequency.value),
          ActiveWeekdays: [...weekdays.querySelectorAll("input:checked")].map((box) => box.value).join(","),
          BackupRetentionPeriod: numberOrText(retention),
          OplogExpiredDays: numberOrText(oplogDays),
          Notify: notify.checked,
          LongTermInterval: interval.value,
          LongTermActiveDays: interval.value ? longDays.value.trim() : "",
          AlertThreshold: numberOrText(threshold),
        };
        if (interval.value) params.LongTermExpiredDays = numberOrText(longExpiry);
        busy(save, async () => {
          try {
            await call("SetBackupRules", params);
            replace(notice, h("div", { class: "ok" }, "Rule saved."));
          } catch (error) {
            const param = namedParameter(error.message);
            const slot = param && form.querySelector(`.field[data-param="${param}"] .field-error`);
            if (slot) {
              replace(slot, `${error.code}: ${error.message}`);
              replace(notice);
              form.querySelector(`#rule-${param}`).focus();
            } else {
              replace(notice, errorBox(error));
            }
          }
        });
      },
    },
    field("BackupTime", "Backups start at", hour),
    field("BackupFrequency", "Frequency", frequency),
    field("ActiveWeekdays", "On", weekdays),
    field("BackupRetentionPeriod", "Keep automatic backups (days)", retention, "7 to 365"),
    field("OplogExpiredDays", "Keep the oplog for point-in-time recovery (days)", oplogDays, "7 to 365"),
    field("Notify", "Report failed automatic backups", notify),
    field("LongTermInterval", "Long-term retention", interval),
    field("LongTermActiveDays", "Long-term days", longDays, "weekdays 0 (Sunday) to 6, or days of the month 1 to 31"),
    field("LongTermExpiredDays", "Keep long-term backups (days)", longExpiry, "30 to 1075"),
    field("AlertThreshold", "Storage alert threshold (%)", threshold, "50 to 300"),
    save,
  );
  const total = rule.BackupTotalSize || {};
  replace(
    main,
    h("h1", {}, "Backup rules"),
    h("p", { class: "muted" }, `Stored: ${size(total.SnapshotSize || 0)} of backups, ${size(total.OplogSize || 0)} of oplog.`),
    form,
    notice,
  );
}
