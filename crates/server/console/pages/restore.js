// Point-in-time restore of an instance: its restorable window, a time
// inside it, the collections of a database (read from the live instance)
// and the names of their restored copies; then the FlowId followed to its
// end.

import { call } from "../lib/api.js";
import { busy, errorBox, h, replace } from "../lib/dom.js";
import { follow } from "../lib/follow.js";

const TIME = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})$/;
const WINDOW_REFRESH_MS = 3000;

/** `<name>_bak<MMDDhhmmss>` of the time, as the API names a whole database's copies. */
function copyName(name, time) {
  const m = TIME.exec(time);
  return m ? `${name}_bak${m[2]}${m[3]}${m[4]}${m[5]}${m[6]}` : `${name}_restored`;
}

export function render(main, { instanceId }) {
  let left = false;
  let timer = null;
  const windowBox = h("div", { class: "window-box" }, h("p", { class: "loading" }, "Loading the restorable window…"));
  const notice = h("div", { class: "status", "aria-live": "polite" });
  const time = h("input", { id: "restore-time", name: "time", required: true, placeholder: "YYYY-MM-DD hh:mm:ss", spellcheck: "false", size: 19 });
  const database = h("select", { id: "restore-db", name: "db", required: true });
  const collections = h("fieldset", { class: "collections" }, h("legend", {}, "Collections"));
  const submit = h("button", { type: "submit", class: "primary" }, "Restore");

  /** Names the copies after the time, but for names the user typed. */
  function renameCopies() {
    for (const row of collections.querySelectorAll(".collection")) {
      const name = row.querySelector(".new-name");
      if (!name.dataset.edited) name.value = copyName(row.dataset.collection, time.value.trim());
    }
  }
  time.addEventListener("input", renameCopies);

  async function showCollections() {
    replace(collections, h("legend", {}, "Collections"), h("p", { class: "loading" }, "Loading…"));
    try {
      const { Collections } = await call("DescribeDBInstanceNamespace", { InstanceId: instanceId, DbName: database.value });
      replace(
        collections,
        h("legend", {}, `Collections of ${database.value}`),
        Collections.length === 0 ? h("p", { class: "empty" }, "This database has no collections now.") : null,
        Collections.map((name) =>
          h(
            "div",
            { class: "collection", dataset: { collection: name } },
            h("label", { class: "check" }, h("input", { type: "checkbox", value: name }), ` ${name}`),
            " as ",
            h("input", {
              class: "new-name",
              "aria-label": `New name of ${name}`,
              value: copyName(name, time.value.trim()),
              spellcheck: "false",
              oninput: (event) => (event.target.dataset.edited = "yes"),
            }),
          ),
        ),
      );
    } catch (error) {
      replace(collections, h("legend", {}, "Collections"), errorBox(error));
    }
  }

  const form = h(
    "form",
    {
      class: "restore",
      onsubmit: (event) => {
        event.preventDefault();
        const chosen = [...collections.querySelectorAll(".collection")]
          .filter((row) => row.querySelector("input[type=checkbox]").checked)
          .map((row) => ({ OldCollection: row.dataset.collection, NewCollection: row.querySelector(".new-name").value.trim() }));
        if (chosen.length === 0) {
          replace(notice, h("div", { class: "error", role: "alert" }, "Choose at least one collection."));
          return;
        }
        busy(submit, async () => {
          try {
            const { FlowId } = await call("RestoreDBInstance", {
              InstanceId: instanceId,
              RestoreTime: time.value.trim(),
              Databases: [{ Db: database.value, Collections: chosen }],
            });
            replace(notice, h("div", {}, `Restore ${FlowId} queued.`));
            await follow(FlowId, notice, () => `Restore ${FlowId}`, () => left);
          } catch (error) {
            replace(notice, errorBox(error));
          }
        });
      },
    },
    h("label", { for: "restore-time" }, "Restore to"),
    time,
    h("label", { for: "restore-db" }, "Database"),
    database,
    collections,
    submit,
  );
  database.addEventListener("change", showCollections);

  replace(main, h("h1", {}, "Restore to a point in time"), windowBox, h("section", { class: "panel" }, form), notice);

  // The window grows as the oplog is saved: shown anew every few seconds.
  function showWindow() {
    call("DescribeBackupRules", { InstanceId: instanceId })
      .then(({ RestoreWindow }) => {
        if (left) return;
        if (!RestoreWindow || RestoreWindow.length === 0) {
          replace(windowBox, h("p", { class: "empty" }, "No restorable window yet: it opens with the first backup taken while continuous oplog backup runs."));
          return;
        }
        replace(
          windowBox,
          h("p", {}, "Restorable: ", RestoreWindow.map((span, n) => [n ? ", " : "", h("span", { class: "span" }, `${span.StartTime} to ${span.EndTime}`)])),
        );
        if (!time.value) {
          time.value = RestoreWindow[RestoreWindow.length - 1].EndTime;
          renameCopies();
        }
      })
      .catch((error) => {
        if (!left) replace(windowBox, errorBox(error));
      })
      .finally(() => {
        if (!left) timer = setTimeout(showWindow, WINDOW_REFRESH_MS);
      });
  }
  showWindow();
  call("DescribeDBInstanceNamespace", { InstanceId: instanceId })
    .then(({ Databases }) => {
      replace(database, Databases.map((name) => h("option", { value: name }, name)));
      if (Databases.length > 0) showCollections();
      else replace(collections, h("legend", {}, "Collections"), h("p", { class: "empty" }, "The instance has no databases."));
    })
    .catch((error) => replace(collections, h("legend", {}, "Collections"), errorBox(error)));
  return () => {
    left = true;
    clearTimeout(timer);
  };
}
