"""Write docs/config.md: every config key, its default and its comment, from the source.

    python scripts/make_config_doc.py            # rewrite docs/config.md
    python scripts/make_config_doc.py --check    # exit 1 when docs/config.md differs from what it would write

The page is generated, never edited by hand: the shared keys and their comments come from
``jaxgan/config.py`` (``get_base_config``: each ``c.KEY = VALUE  # comment`` line, its indented comment
lines below it, and the ``# Section.`` comments that group them; ``OPTIONAL_KEYS``: each entry and its
comments), the valid values from ``config.CHOICES`` and the range checks from ``POSITIVE_KEYS`` /
``NON_NEGATIVE_KEYS``; each objective's own keys from its module's ``CONFIG_KEYS`` and its defaults of
the shared keys from ``CONFIG_DEFAULTS`` (``jaxgan/objectives.py`` lists the modules). A comment on a
line of those dicts describes the keys on that line; a comment above the first key, or one only on a
dict's last line, describes the whole dict. ``tests/test_config_doc.py`` checks that the committed page is this script's output.
"""
from __future__ import annotations

import ast
import importlib.util
import io
import os
import sys
import tokenize
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT = os.path.join(ROOT, "docs", "config.md")


def _comments(source: str) -> tuple[dict[int, tuple[int, str]], set[int]]:
  """line -> (column, text) of each ``#`` comment, and the lines that hold nothing but a comment."""
  comments, code_lines = {}, set()
  for tok in tokenize.generate_tokens(io.StringIO(source).readline):
    if tok.type == tokenize.COMMENT:
      comments[tok.start[0]] = (tok.start[1], tok.string.lstrip("#").strip())
    elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
      for line in range(tok.start[0], tok.end[0] + 1):
        code_lines.add(line)
  return comments, {n for n in comments if n not in code_lines}


def _comment_of(node: ast.AST, comments, comment_only, stop: int | None = None) -> str:
  """The comments on ``node``'s lines plus the comment-only lines right below it that are indented
  further than ``node`` starts (continuation lines), up to line ``stop``."""
  parts = [comments[n][1] for n in range(node.lineno, node.end_lineno + 1) if n in comments]
  n = node.end_lineno + 1
  while n in comment_only and comments[n][0] > node.col_offset and (stop is None or n < stop):
    parts.append(comments[n][1])
    n += 1
  return " ".join(p for p in parts if p)


def _literal(node: ast.AST) -> Any:
  if isinstance(node, ast.Tuple) and len(node.elts) == 2 and isinstance(node.elts[0], ast.Name):
    return (node.elts[0].id, _literal(node.elts[1]))    # OPTIONAL_KEYS: (type, default)
  try:
    return ast.literal_eval(node)
  except ValueError:
    return ast.unparse(node)


def shared_keys(path: str) -> list[tuple[str, list[tuple[str, Any, str]]]]:
  """``[(section, [(key, default, comment), ...]), ...]`` from ``get_base_config``'s ``c.KEY = VALUE`` lines."""
  source = open(path, encoding="utf-8").read()
  comments, comment_only = _comments(source)
  func = next(n for n in ast.walk(ast.parse(source))
              if isinstance(n, ast.FunctionDef) and n.name == "get_base_config")
  sections: list[tuple[str, list]] = [("General", [])]
  previous_end = func.body[0].end_lineno
  for stmt in func.body:
    if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Attribute)
            and isinstance(stmt.targets[0].value, ast.Name) and stmt.targets[0].value.id == "c"):
      previous_end = stmt.end_lineno
      continue
    for n in range(previous_end + 1, stmt.lineno):     # a "# Section." comment at the statement's indentation
      if n in comment_only and comments[n][0] == stmt.col_offset:
        sections.append((comments[n][1].split("(")[0].strip().rstrip("."), []))
    sections[-1][1].append((stmt.targets[0].attr, _literal(stmt.value), _comment_of(stmt, comments, comment_only)))
    previous_end = stmt.end_lineno
  return [(name, keys) for name, keys in sections if keys]


def dict_entries(path: str, name: str) -> tuple[list[tuple[str, Any, str]], str]:
  """``([(key, value, comment), ...], note)`` of the module-level dict literal ``name = {...}`` in ``path``.
  A comment only on the dict's last line (or on a one-line dict) is the ``note`` of the whole dict."""
  source = open(path, encoding="utf-8").read()
  comments, comment_only = _comments(source)
  node = next((n for n in ast.parse(source).body if isinstance(n, (ast.Assign, ast.AnnAssign))
               and any(isinstance(t, ast.Name) and t.id == name
                       for t in (n.targets if isinstance(n, ast.Assign) else [n.target]))), None)
  if node is None or not isinstance(node.value, ast.Dict):
    return [], ""
  d = node.value
  inner = [n for n in range(d.lineno, d.end_lineno + 1) if n in comments]
  if not inner or inner == [d.end_lineno]:
    note = " ".join(comments[n][1] for n in inner)
    return [(_literal(k), _literal(v), "") for k, v in zip(d.keys, d.values)], note
  first = d.keys[0].lineno if d.keys else d.end_lineno + 1      # comments above the first key: the note
  note = " ".join(comments[n][1] for n in inner if n < first)
  out = []
  starts = [k.lineno for k in d.keys] + [d.end_lineno + 1]
  for i, (k, v) in enumerate(zip(d.keys, d.values)):
    span = ast.Tuple(elts=[], lineno=k.lineno, end_lineno=v.end_lineno, col_offset=k.col_offset)
    same_line = i > 0 and d.keys[i - 1].lineno == k.lineno
    comment = _comment_of(span, comments, comment_only, stop=starts[i + 1]) if not same_line else out[-1][2]
    out.append((_literal(k), _literal(v), comment))
  return out, note


def _module_path(module: str) -> str:
  return importlib.util.find_spec(module).origin


def _cell(value: Any) -> str:
  text = repr(value) if isinstance(value, str) else str(value)
  return "`" + text.replace("|", "\\|") + "`"


def _text(comment: str) -> str:
  return comment.replace("|", "\\|")


def render() -> str:
  """The whole of docs/config.md."""
  sys.path.insert(0, ROOT)
  from jaxgan import config as jaxgan_config   # pylint: disable=import-outside-toplevel
  from jaxgan import objectives                # pylint: disable=import-outside-toplevel

  def constraint(key: str) -> str:
    parts = []
    if key in jaxgan_config.CHOICES:
      parts.append("one of " + ", ".join(f"`{c}`" for c in jaxgan_config.CHOICES[key]))
    if key == "netG":
      parts.append(jaxgan_config.NETG_HELP)
    if key == "dataset":
      parts.append("`demo:<name>` (" + ", ".join(jaxgan_config.DEMO_DATASETS) + "), `folder:PATH` or "
                   "`tfds:NAME[/CONFIG]`")
    if key in jaxgan_config.POSITIVE_KEYS:
      parts.append(">= 1")
    if key in jaxgan_config.NON_NEGATIVE_KEYS:
      parts.append(">= 0")
    return "; ".join(parts)

  def row(key: str, default: Any, comment: str) -> str:
    allowed = constraint(key)
    return f"| `{key}` | {_cell(default)} | {_text(comment)} | {allowed} |"

  config_path = os.path.join(ROOT, "jaxgan", "config.py")
  lines = [
      "# Configuration reference",
      "",
      "<!-- Generated by scripts/make_config_doc.py from jaxgan/config.py and the objective modules; "
      "do not edit by hand. -->",
      "",
      "Every key a run reads. Set any of them with `--config.KEY=VALUE` on the command line, in a recipe's",
      "`get_config()`, or on the `ConfigDict` in Python; `jaxgan.config.validate` refuses unknown keys, values",
      "outside the valid set, and another objective's keys, naming the key. A config of `model=M` holds the",
      "shared keys (with M's defaults of some of them, below) and M's own keys.",
      "",
  ]
  header = ["| key | default | meaning | valid values |", "|---|---|---|---|"]
  for section, keys in shared_keys(config_path):
    lines += [f"## {section}", "", *header, *(row(*k) for k in keys), ""]
  optional, _ = dict_entries(config_path, "OPTIONAL_KEYS")
  lines += ["## Optional keys", "",
            "Recipes may leave these out; `--config.KEY=VALUE` still sets them (`config.OPTIONAL_KEYS`).", "",
            *header]
  lines += [row(key, default, comment) for key, (_, default), comment in optional]
  lines.append("")
  for name in objectives.names():
    module = objectives.OBJECTIVES[name]
    path = _module_path(module)
    own, own_note = dict_entries(path, "CONFIG_KEYS")
    defaults, defaults_note = dict_entries(path, "CONFIG_DEFAULTS")
    lines += [f"## Objective `{name}` (`model={name}`, `{module}`)", ""]
    if own:
      lines += [f"Its own keys (`CONFIG_KEYS`{': ' + _text(own_note) if own_note else ''}):", "", *header,
                *(row(k, v, c) for k, v, c in own), ""]
    if defaults:
      lines += [f"Its defaults of shared keys (`CONFIG_DEFAULTS`{': ' + _text(defaults_note) if defaults_note else ''}):",
                "", "| key | default |", "|---|---|", *(f"| `{k}` | {_cell(v)} |" for k, v, _ in defaults), ""]
  return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str]) -> int:
  text = render()
  if "--check" in argv:
    current = open(OUTPUT, encoding="utf-8").read() if os.path.exists(OUTPUT) else ""
    if current != text:
      print(f"{os.path.relpath(OUTPUT, ROOT)} is out of date: run python scripts/make_config_doc.py")
      return 1
    return 0
  with open(OUTPUT, "w", encoding="utf-8") as f:
    f.write(text)
  print(f"wrote {os.path.relpath(OUTPUT, ROOT)}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
