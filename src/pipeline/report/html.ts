/** report.html: the Markdown report as a self-contained page, with each figure inlined as SVG. */

function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** The Markdown report as one self-contained HTML page, each figure inlined as SVG. */
export function html(md: string, svgs: Map<string, string>): string {
  // A small Markdown subset is enough for this fixed layout: headings, tables, paragraphs, images -> inline SVG.
  const body: string[] = [];
  const lines = md.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i];
    if (l.startsWith('# ')) body.push(`<h1>${escapeHtml(l.slice(2))}</h1>`);
    else if (l.startsWith('## ')) body.push(`<h2>${escapeHtml(l.slice(3))}</h2>`);
    else if (l.startsWith('> '))
      body.push(`<p class="warn">${escapeHtml(l.slice(2)).replace(/\*\*(.+?)\*\*/g, '<b>$1</b>')}</p>`);
    else if (l.startsWith('|')) {
      const rows: string[] = [];
      while (i < lines.length && lines[i].startsWith('|')) {
        if (!/^\|[-|]+\|$/.test(lines[i])) {
          const cells = lines[i]
            .slice(1, -1)
            .split('|')
            .map((c) => escapeHtml(c.trim()).replace(/\*\*(.+?)\*\*/g, '<b>$1</b>'));
          rows.push(
            `<tr>${cells.map((c) => (rows.length === 0 ? `<th>${c}</th>` : `<td>${c}</td>`)).join('')}</tr>`,
          );
        }
        i++;
      }
      i--;
      body.push(`<table>${rows.join('')}</table>`);
    } else if (l.startsWith('![')) {
      const id = /^!\[([^\]]+)\]/.exec(l)![1];
      body.push(`<figure>${svgs.get(id) ?? ''}</figure>`);
    } else if (l.startsWith('- ')) body.push(`<li>${escapeHtml(l.slice(2))}</li>`);
    else if (l.trim())
      body.push(
        `<p>${escapeHtml(l)
          .replace(/\*\*(.+?)\*\*/g, '<b>$1</b>')
          .replace(/`([^`]+)`/g, '<code>$1</code>')}</p>`,
      );
  }
  return `<!doctype html><html><head><meta charset="utf-8"><title>PSM Lab report</title><style>
body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;font-size:14px}th{background:#f4f4f4}
.warn{background:#fff3cd;padding:8px;border-left:4px solid #e0a800}figure{margin:1em 0}
</style></head><body>${body.join('\n')}</body></html>`;
}
