// Building the page: elements made with the DOM (text is always text, never
// parsed as HTML), and the formats the console shows values in.

/**
 * `h("button", {class: "primary", onclick: f}, "Save")`: an element with
 * attributes (`on...` are listeners, `false`/`null` are left out) and
 * children (strings become text; arrays are flattened; null is skipped).
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) {
      element.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces the children of `element`. */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
}

/** Bytes as a person reads them: `1.5 GiB`. */
export function size(bytes) {
  if (bytes === null || bytes === undefined || bytes === "") return "";
  let value = Number(bytes);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** Seconds as `1 h 2 min`, `3 min 4 s` or `5 s`. */
export function duration(seconds) {
  const s = Math.max(0, Math.round(Number(seconds) || 0));
  if (s >= 3600) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  if (s >= 60) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${s} s`;
}

/**
 * A table with a header row, or `empty` when there are no rows. Each cell
 * carries its column's name, shown beside it when a narrow screen lays
 * the rows out as cards.
 */
export function table(columns, rows, empty) {
  if (rows.length === 0) return h("p", { class: "empty" }, empty);
  for (const row of rows) {
    [...row.children].forEach((cell, n) => {
      if (columns[n]) cell.dataset.label = columns[n];
    });
  }
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows),
    ),
  );
}

/** The message of a failed call, with its code. */
export function errorBox(error) {
  const code = error && error.code ? error.code : "Error";
  return h("div", { class: "error", role: "alert" }, h("strong", {}, code), " ", error.message || String(error));
}

/**
 * Runs `work` with `button` disabled (and marked busy) until it settles:
 * a request in flight cannot be sent twice.
 */
export async function busy(button, work) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}
