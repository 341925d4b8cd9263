// An instance's download tasks: choose a backup and its replica sets,
// create the tasks, watch each one's Percent live, and download each
// finished file (its signed URL) with its SHA-256 to check it against.

import { call } from "../lib/api.js";
import { busy, duration, errorBox, h, replace, size, table } from "../lib/dom.js";

const REFRESH_MS = 1000;
const TASK_STATUS = { 0: "waiting", 1: "packaging", 2: "done", 3: "failed", 4: "waiting to retry" };

function copyButton(text) {
  const button = h("button", { type: "button", class: "small", title: "Copy the SHA-256" }, "Copy");
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch {
      button.textContent = "Select it";
    }
    setTimeout(() => (button.textContent = "Copy"), 1500);
  });
  return button;
}

function taskRow(task) {
  const done = task.Status === 2;
  return h(
    "tr",
    { dataset: { backup: task.BackupName, replicaSet: task.ReplicaSetId, status: String(task.Status) } },
    h("td", { class: "time" }, task.CreateTime),
    h("td", {}, task.BackupName),
    h("td", {}, task.ReplicaSetId),
    h("td", {}, h("span", { class: `badge task-${task.Status}` }, TASK_STATUS[task.Status] || String(task.Status))),
    h("td", { class: "percent" }, h("progress", { max: 100, value: task.Percent, "aria-label": `${task.Percent}%` }), ` ${task.Percent}%`),
    h("td", { class: "number" }, done ? size(task.BackupSize) : ""),
    h("td", { class: "number" }, duration(task.TimeSpend)),
    h(
      "td",
      { class: "sha" },
      task.SHA256 ? [h("code", { class: "sha256", title: task.SHA256 }, `${task.SHA256.slice(0, 12)}…`), " ", copyButton(task.SHA256)] : "",
    ),
    h(
      "td",
      {},
      done && task.Url ? h("a", { class: "button primary download", href: task.Url, download: "" }, "Download") : "",
      task.Status === 3 || task.Status === 4 ? h("div", { class: "failure" }, task.FailureReason) : "",
    ),
  );
}

export function render(main, { instanceId, query }) {
  let timer = null;
  let left = false;
  const notice = h("div", { class: "status", "aria-live": "polite" });
  const tasks = h("div", { class: "tasks" }, h("p", { class: "loading" }, "Loading download tasks…"));
  const backupSelect = h("select", { id: "download-backup", name: "backup", required: true });
  const sets = h("fieldset", { class: "sets" }, h("legend", {}, "Replica sets"));
  // Enabled once the backups and replica sets are there to choose from.
  const create = h("button", { type: "submit", class: "primary", disabled: true }, "Create download tasks");
  const form = h(
    "form",
    {
      class: "create-download",
      onsubmit: (event) => {
        event.preventDefault();
        const chosen = [...sets.querySelectorAll("input:checked")].map((box) => ({ ReplicaSetId: box.value }));
        if (chosen.length === 0) {
          replace(notice, h("div", { class: "error", role: "alert" }, "Choose at least one replica set."));
          return;
        }
        busy(create, async () => {
          try {
            await call("CreateBackupDownloadTask", { InstanceId: instanceId, BackupName: backupSelect.value, BackupSets: chosen });
            replace(notice, h("div", { class: "ok" }, `Download tasks created for ${backupSelect.value}.`));
            refresh();
          } catch (error) {
            replace(notice, errorBox(error));
          }
        });
      },
    },
    h("label", { for: "download-backup" }, "Backup"),
    backupSelect,
    sets,
    create,
  );

  async function fillForm() {
    try {
      const [{ BackupList }, { InstanceDetails }] = await Promise.all([
        call("DescribeDBBackups", { InstanceId: instanceId }),
        call("DescribeDBInstances", { InstanceIds: [instanceId] }),
      ]);
      const ready = BackupList.filter((b) => b.Status === 2);
      const wanted = query.get("backup");
      replace(
        backupSelect,
        ready.map((b) => h("option", { value: b.BackupName, selected: b.BackupName === wanted }, `${b.BackupName}${b.BackupDesc ? ` (${b.BackupDesc})` : ""}`)),
      );
      const replicaSets = InstanceDetails[0] ? InstanceDetails[0].ReplicaSets : [];
      replace(
        sets,
        h("legend", {}, "Replica sets"),
        replicaSets.map((set) =>
          h("label", { class: "check" }, h("input", { type: "checkbox", name: "replica-set", value: set.ReplicaSetId, checked: true }), ` ${set.ReplicaSetId}`),
        ),
      );
      if (ready.length === 0) {
        replace(notice, h("p", { class: "empty" }, "No backup has succeeded yet: take one on the Backups page."));
      } else {
        create.disabled = false;
      }
    } catch (error) {
      replace(notice, errorBox(error));
    }
  }

  function refresh() {
    clearTimeout(timer);
    call("DescribeBackupDownloadTask", { InstanceId: instanceId, Limit: 100 })
      .then(({ Tasks }) => {
        if (left) return;
        replace(
          tasks,
          table(
            ["Created", "Backup", "Replica set", "Status", "Percent", "Size", "Time", "SHA-256", ""],
            Tasks.map(taskRow),
            "No download tasks yet.",
          ),
        );
        if (Tasks.some((t) => t.Status === 0 || t.Status === 1 || t.Status === 4)) {
          timer = setTimeout(refresh, REFRESH_MS);
        }
      })
      .catch((error) => {
        if (!left) replace(tasks, errorBox(error));
      });
  }

  replace(main, h("h1", {}, "Downloads"), h("section", { class: "panel" }, h("h2", {}, "Package a backup for download"), form), notice, tasks);
  fillForm();
  refresh();
  return () => {
    left = true;
    clearTimeout(timer);
  };
}
