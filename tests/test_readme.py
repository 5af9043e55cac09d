"""The README's API example runs and trains (loss well below chance, ln 3 = 1.10)."""

import contextlib
import io
import os
import re

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def test_readme_example_runs_and_learns():
  text = open(README).read()
  block = re.search(r"<!-- readme-example[^>]*-->\s*```python\n(.*?)```", text, re.S).group(1)
  assert "optax.chain(" in block and "fz.fogzo(" in block
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    exec(compile(block, "README.md", "exec"), {})  # pylint: disable=exec-used
  loss = float(re.search(r"loss ([\d.]+)", out.getvalue()).group(1))
  assert loss < 0.6, out.getvalue()


def test_readme_commands():
  text = open(README).read()
  assert 'pip install -e ".[train]" && python train.py --config=configs/mnist_mlp.py' in text
  assert 'pip install -e ".[test]" && pytest' in text


def test_links_in_readme_and_docs_point_to_files_that_exist():
  root = os.path.dirname(README)
  pages = [README] + [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(root, "docs"))
                      for f in fs if f.endswith(".md")]
  missing = []
  for page in pages:
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", open(page).read()):
      if "://" not in target and not os.path.exists(os.path.join(os.path.dirname(page), target)):
        missing.append(f"{os.path.relpath(page, root)} → {target}")
  assert len(pages) > 5 and not missing, missing
