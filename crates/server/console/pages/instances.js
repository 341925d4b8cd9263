// Instances: every instance the keys may see, with its replica sets, its
// latest backup and its restorable window; each links to its pages.

import { call } from "../lib/api.js";
import { errorBox, h, replace, size, table } from "../lib/dom.js";

/** `BackupInfo.Status`. */
export const BACKUP_STATUS = { 1: "running", 2: "succeeded" };

/** The latest backup of `id`, or a refusal shown in its place. */
async function latestBackup(id) {
  try {
    const { BackupList } = await call("DescribeDBBackups", { InstanceId: id, Limit: 1 });
    const latest = BackupList[0];
    if (!latest) return h("span", { class: "muted" }, "none yet");
    return h(
      "span",
      {},
      latest.BackupName,
      " ",
      h("span", { class: `badge status-${latest.Status}` }, BACKUP_STATUS[latest.Status] || latest.Status),
      latest.Status === 2 ? ` ${size(latest.BackupSize * 1024)}` : "",
    );
  } catch (error) {
    return h("span", { class: "muted", title: error.message }, error.code);
  }
}

/** The restorable window of `id`: its spans, or why there is none. */
async function window_(id) {
  try {
    const { RestoreWindow } = await call("DescribeBackupRules", { InstanceId: id });
    if (!RestoreWindow || RestoreWindow.length === 0) return h("span", { class: "muted" }, "none yet");
    return h(
      "span",
      { class: "window" },
      RestoreWindow.map((span) => h("span", { class: "span" }, `${span.StartTime} to ${span.EndTime}`)),
    );
  } catch (error) {
    return h("span", { class: "muted", title: error.message }, error.code);
  }
}

function row(instance) {
  const id = instance.InstanceId;
  const link = (page, label) => h("a", { href: `#/instances/${encodeURIComponent(id)}/${page}` }, label);
  const latest = h("td", { class: "latest" }, "…");
  const restorable = h("td", { class: "restorable" }, "…");
  latestBackup(id).then((shown) => replace(latest, shown));
  window_(id).then((shown) => replace(restorable, shown));
  return h(
    "tr",
    { dataset: { instance: id } },
    h("td", {}, link("backups", id), h("div", { class: "muted" }, instance.InstanceName)),
    h("td", {}, instance.ClusterType === 1 ? "sharded cluster" : "replica set"),
    h("td", {}, instance.ReplicaSets.map((set) => h("div", {}, set.ReplicaSetId))),
    h("td", {}, instance.MongoVersion || h("span", { class: "muted" }, "unknown")),
    latest,
    restorable,
    h("td", { class: "actions" }, link("backups", "Backups"), link("downloads", "Downloads"), link("rules", "Rules"), link("restore", "Restore")),
  );
}

export function render(main) {
  replace(main, h("h1", {}, "Instances"), h("p", { class: "loading" }, "Loading instances…"));
  call("DescribeDBInstances", { Limit: 100 })
    .then(({ InstanceDetails, TotalCount }) => {
      replace(
        main,
        h("h1", {}, "Instances"),
        h("p", { class: "muted" }, `${TotalCount} instance${TotalCount === 1 ? "" : "s"}`),
        table(
          ["Instance", "Type", "Replica sets", "Version", "Latest backup", "Restorable window", ""],
          InstanceDetails.map(row),
          "No instance is registered for this account in this region.",
        ),
      );
    })
    .catch((error) => replace(main, h("h1", {}, "Instances"), errorBox(error)));
  return null;
}
