/** Escaping for the report's text formats: a Markdown table cell, HTML, XML. */

/** A pipe would end a Markdown table cell, a newline its row. */
export const mdEscape = (s: string) => s.replace(/\|/g, "\\|").replace(/\n/g, " ");

export const htmlEscape = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

export const xmlEscape = (s: string) =>
  htmlEscape(s)
    .replace(/'/g, "&apos;")
    // XML 1.0 forbids these control characters even escaped: they are dropped.
    // eslint-disable-next-line no-control-regex
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, "");
