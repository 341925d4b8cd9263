// Point-in-time restore of an instance: its restorable window, a time
// inside it and a database (its collections read from the live instance);
// then either whole collections restored under new names
// (RestoreDBInstance), or the documents of some keys of one collection
// (FlashBackDBInstance); each FlowId followed to its end.

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
  const flashCollection = h("select", { id: "flashback-collection", name: "collection", required: true });
  const flashKey = h("input", { id: "flashback-key", name: "key", value: "_id", required: true, spellcheck: "false" });
  const flashValues = h("textarea", { id: "flashback-values", name: "values", rows: 4, required: true, spellcheck: "false", placeholder: "one value per line" });
  const flashResult = h("input", {
    id: "flashback-result",
    name: "result",
    required: true,
    spellcheck: "false",
    oninput: (event) => (event.target.dataset.edited = "yes"),
  });
  const flashTarget = h("input", { id: "flashback-target", name: "target", placeholder: "this instance", spellcheck: "false" });
  const flashSubmit = h("button", { type: "submit", class: "primary" }, "Flash back");

  /** Names the copies after the time, but for names the user typed. */
  function renameCopies() {
    for (const row of collections.querySelectorAll(".collection")) {
      const name = row.querySelector(".new-name");
      if (!name.dataset.edited) name.value = copyName(row.dataset.collection, time.value.trim());
    }
    if (!flashResult.dataset.edited && flashCollection.value) {
      flashResult.value = copyName(flashCollection.value, time.value.trim());
    }
  }
  time.addEventListener("input", renameCopies);
  flashCollection.addEventListener("change", renameCopies);

  async function showCollections() {
    replace(collections, h("legend", {}, "Collections"), h("p", { class: "loading" }, "Loading…"));
    try {
      const { Collections } = await call("DescribeDBInstanceNamespace", { InstanceId: instanceId, DbName: database.value });
      replace(flashCollection, Collections.map((name) => h("option", { value: name }, name)));
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
      renameCopies();
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
    collections,
    submit,
  );
  database.addEventListener("change", showCollections);

  const flashForm = h(
    "form",
    {
      class: "restore flashback",
      onsubmit: (event) => {
        event.preventDefault();
        const field = flashKey.value.trim();
        const values = flashValues.value.split("\n").map((v) => v.trim()).filter(Boolean);
        const params = {
          InstanceId: instanceId,
          TargetFlashbackTime: time.value.trim(),
          TargetDatabases: [
            {
              DBName: database.value,
              Collections: [
                {
                  CollectionName: flashCollection.value,
                  TargetResultCollectionName: flashResult.value.trim(),
                  FilterKey: field,
                  KeyValues: values.map((value) => ({ Key: field, Value: value })),
                },
              ],
            },
          ],
        };
        if (flashTarget.value.trim()) params.TargetInstanceId = flashTarget.value.trim();
        busy(flashSubmit, async () => {
          try {
            const { FlowId } = await call("FlashBackDBInstance", params);
            replace(notice, h("div", {}, `Flashback ${FlowId} queued.`));
            await follow(FlowId, notice, () => `Flashback ${FlowId}`, () => left);
          } catch (error) {
            replace(notice, errorBox(error));
          }
        });
      },
    },
    h("p", { class: "hint" }, "The documents whose key has one of these values, as they were at that time, into a new collection. A value matches a string equal to it and the ObjectId or number it spells."),
    h("label", { for: "flashback-collection" }, "Collection"),
    flashCollection,
    h("label", { for: "flashback-key" }, "Key field"),
    flashKey,
    h("label", { for: "flashback-values" }, "Key values"),
    flashValues,
    h("label", { for: "flashback-result" }, "Result collection"),
    flashResult,
    h("label", { for: "flashback-target" }, "Into instance"),
    flashTarget,
    flashSubmit,
  );

  replace(
    main,
    h("h1", {}, "Restore to a point in time"),
    windowBox,
    h(
      "section",
      { class: "panel when" },
      h("label", { for: "restore-time" }, "Restore to"),
      time,
      h("label", { for: "restore-db" }, "Database"),
      database,
    ),
    h("section", { class: "panel" }, h("h2", {}, "Whole collections"), form),
    h("section", { class: "panel" }, h("h2", {}, "Documents by key (flashback)"), flashForm),
    notice,
  );

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
