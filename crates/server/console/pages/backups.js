// An instance's backups: the list (status, size, times, remark, expiry),
// taking a backup and following it to its end, deleting one and changing
// when one expires. The list refreshes while a backup runs.

import { call } from "../lib/api.js";
import { busy, errorBox, h, replace, size, table } from "../lib/dom.js";
import { follow } from "../lib/follow.js";
import { BACKUP_STATUS } from "./instances.js";

const REFRESH_MS = 2000;

export function render(main, { instanceId }) {
  let timer = null;
  let left = false;
  const notice = h("div", { class: "status", "aria-live": "polite" });
  const list = h("div", { class: "backups" }, h("p", { class: "loading" }, "Loading backups…"));
  const remark = h("input", { id: "backup-remark", name: "remark", maxlength: 256, placeholder: "optional" });
  const takeButton = h("button", { type: "submit", class: "primary" }, "Back up now");

  const takeForm = h(
    "form",
    {
      class: "inline",
      onsubmit: (event) => {
        event.preventDefault();
        busy(takeButton, async () => {
          try {
            const params = { InstanceId: instanceId, BackupMethod: 0 };
            if (remark.value.trim()) params.BackupRemark = remark.value.trim();
            const { AsyncRequestId } = await call("CreateBackupDBInstance", params);
            remark.value = "";
            replace(notice, h("div", {}, "Backup queued."));
            refresh();
            await follow(AsyncRequestId, notice, (info) => info.BackupName || "The backup", () => left);
            refresh();
          } catch (error) {
            replace(notice, errorBox(error));
          }
        });
      },
    },
    h("label", { for: "backup-remark" }, "Remark"),
    remark,
    takeButton,
  );

  function actions(backup) {
    const cell = h("td", { class: "actions" });
    const download = h("a", { href: `#/instances/${encodeURIComponent(instanceId)}/downloads?backup=${encodeURIComponent(backup.BackupName)}` }, "Download…");
    const remove = h("button", { type: "button", class: "danger" }, "Delete");
    const expiry = h("button", { type: "button" }, "Change expiry");
    const normal = () => replace(cell, backup.Status === 2 ? download : null, expiry, remove);
    remove.addEventListener("click", () => {
      const confirm = h("button", { type: "button", class: "danger" }, "Delete for good");
      const cancel = h("button", { type: "button", onclick: normal }, "Cancel");
      confirm.addEventListener("click", () =>
        busy(confirm, async () => {
          try {
            await call("DeleteDBBackups", { InstanceId: instanceId, BackupIds: [backup.BackId] });
            replace(notice, h("div", { class: "ok" }, `${backup.BackupName} deleted.`));
            refresh();
          } catch (error) {
            replace(notice, errorBox(error));
            normal();
          }
        }),
      );
      replace(cell, h("span", {}, "Delete this backup and its data? "), confirm, cancel);
      confirm.focus();
    });
    expiry.addEventListener("click", () => {
      const field = h("input", { "aria-label": "New expiry", value: backup.DeleteTime, size: 19, pattern: "\\d{4}-\\d{2}-\\d{2} \\d{2}:\\d{2}:\\d{2}", title: "YYYY-MM-DD hh:mm:ss" });
      const save = h("button", { type: "submit", class: "primary" }, "Save");
      const cancel = h("button", { type: "button", onclick: normal }, "Cancel");
      const form = h(
        "form",
        {
          class: "inline",
          onsubmit: (event) => {
            event.preventDefault();
            busy(save, async () => {
              try {
                await call("ModifyBackupExpireTime", { InstanceId: instanceId, BackupIds: [backup.BackId], ExpireTime: field.value.trim() });
                replace(notice, h("div", { class: "ok" }, `${backup.BackupName} now expires at ${field.value.trim()}.`));
                refresh();
              } catch (error) {
                replace(notice, errorBox(error));
              }
            });
          },
        },
        field,
        save,
        cancel,
      );
      replace(cell, form);
      field.focus();
    });
    normal();
    return cell;
  }

  function refresh() {
    clearTimeout(timer);
    call("DescribeDBBackups", { InstanceId: instanceId })
      .then(({ BackupList }) => {
        if (left) return;
        replace(
          list,
          table(
            ["Backup", "Type", "Status", "Size", "Started", "Ended", "Remark", "Expires", ""],
            BackupList.map((b) =>
              h(
                "tr",
                { dataset: { backup: b.BackupName } },
                h("td", {}, b.BackupName),
                h("td", {}, b.BackupType === 0 ? "automatic" : "manual"),
                h("td", {}, h("span", { class: `badge status-${b.Status}` }, BACKUP_STATUS[b.Status] || String(b.Status))),
                h("td", { class: "number" }, b.Status === 2 ? size(b.BackupSize * 1024) : ""),
                h("td", { class: "time" }, b.StartTime),
                h("td", { class: "time" }, b.Status === 2 ? b.EndTime : ""),
                h("td", {}, b.BackupDesc),
                h("td", { class: "time" }, b.DeleteTime),
                actions(b),
              ),
            ),
            "No backups yet: take one, or set a backup rule.",
          ),
        );
        if (BackupList.some((b) => b.Status === 1)) timer = setTimeout(refresh, REFRESH_MS);
      })
      .catch((error) => {
        if (!left) replace(list, errorBox(error));
      });
  }

  replace(main, h("h1", {}, "Backups"), h("section", { class: "panel" }, h("h2", {}, "Take a backup"), takeForm), notice, list);
  refresh();
  return () => {
    left = true;
    clearTimeout(timer);
  };
}
