// A small Markdown renderer that builds DOM nodes and never parses HTML:
// every piece of model text reaches the page through textContent or a
// text node, so "<script>" in an answer is shown as those characters.
// It covers what chat answers use: paragraphs, headings, fenced and
// inline code, bold, italic, links (http and https only), lists, quotes
// and rules.
"use strict";

const Markdown = (() => {
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // Inline spans: `code`, **bold**, *italic* or _italic_, [text](url).
  const inlineRe = /(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)|\*\*([^*]+)\*\*|\*([^*\s][^*]*)\*|\b_([^_]+)_\b|\[([^\]]+)\]\(([^)\s]+)\)/g;

  function inline(parent, text) {
    let last = 0;
    for (const m of text.matchAll(inlineRe)) {
      if (m.index > last) parent.append(document.createTextNode(text.slice(last, m.index)));
      if (m[1]) parent.append(el("code", "", m[2].trim() || m[2]));
      else if (m[3] !== undefined) inline(parent.appendChild(el("strong")), m[3]);
      else if (m[4] !== undefined) inline(parent.appendChild(el("em")), m[4]);
      else if (m[5] !== undefined) inline(parent.appendChild(el("em")), m[5]);
      else {
        let url = null;
        try {
          const u = new URL(m[7]);
          if (u.protocol === "http:" || u.protocol === "https:") url = u.href;
        } catch (_) { /* not a URL: shown as text */ }
        if (url) {
          const a = el("a");
          a.href = url;
          a.rel = "noopener noreferrer nofollow";
          a.target = "_blank";
          inline(a, m[6]);
          parent.append(a);
        } else {
          parent.append(document.createTextNode(m[0]));
        }
      }
      last = m.index + m[0].length;
    }
    if (last < text.length) parent.append(document.createTextNode(text.slice(last)));
  }

  const listRe = /^(\s*)([-*+]|\d+[.)])\s+(.*)$/;

  // render returns a fragment for the Markdown text.
  function render(text) {
    const out = document.createDocumentFragment();
    const lines = text.replace(/\r\n?/g, "\n").split("\n");
    let para = [];
    const flush = () => {
      if (para.length) {
        const p = el("p");
        para.forEach((l, i) => {
          if (i) p.append(el("br"));
          inline(p, l);
        });
        out.append(p);
        para = [];
      }
    };
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      const fence = line.match(/^\s*(```+|~~~+)\s*([\w+#.-]*)/);
      if (fence) {
        flush();
        const body = [];
        i++;
        while (i < lines.length && !lines[i].trim().startsWith(fence[1])) body.push(lines[i++]);
        const pre = el("pre", "code");
        if (fence[2]) pre.dataset.lang = fence[2];
        pre.append(el("code", "", body.join("\n")));
        out.append(pre);
        continue;
      }
      const h = line.match(/^(#{1,6})\s+(.*)$/);
      if (h) {
        flush();
        inline(out.appendChild(el("h" + Math.min(h[1].length + 2, 6))), h[2]);
        continue;
      }
      if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) {
        flush();
        out.append(el("hr"));
        continue;
      }
      if (/^\s*>/.test(line)) {
        flush();
        const quote = [];
        while (i < lines.length && /^\s*>/.test(lines[i])) quote.push(lines[i++].replace(/^\s*>\s?/, ""));
        i--;
        const bq = el("blockquote");
        bq.append(render(quote.join("\n")));
        out.append(bq);
        continue;
      }
      if (listRe.test(line)) {
        flush();
        const ordered = /\d/.test(line.match(listRe)[2]);
        const list = el(ordered ? "ol" : "ul");
        while (i < lines.length && listRe.test(lines[i])) {
          inline(list.appendChild(el("li")), lines[i].match(listRe)[3]);
          i++;
        }
        i--;
        out.append(list);
        continue;
      }
      if (line.trim() === "") {
        flush();
        continue;
      }
      para.push(line);
    }
    flush();
    return out;
  }

  return { render };
})();
