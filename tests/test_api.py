"""The Python API: the README's example runs as written, `import xtune` stays light."""

from __future__ import annotations

import re
import subprocess
import sys

import yaml

from tests.conftest import REPO, sample_run_config


def readme_example() -> str:
    """The fenced Python block of the README's "Python API" section."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_readme_example_runs(tmp_path, monkeypatch, capsys):
    """Run verbatim in a folder whose `experiments/demo_train.yaml` is a tiny config on the
    bundled sample (the demo's MiniLM would take minutes)."""
    raw = sample_run_config(tmp_path, training={"steps_per_epoch": 2})
    raw["data"] = {**raw["data"], "text": "title", "text_pair": "body", "max_length": 32}
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "demo_train.yaml").write_text(
        yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    prediction = namespace["prediction"]
    labels = namespace["model"].labels
    assert set(prediction.probabilities) == set(labels)
    assert set(prediction.labels) <= set(labels)
    probabilities = [prediction.probabilities[label] for label in prediction.labels]
    assert probabilities == sorted(probabilities, reverse=True)
    assert str(namespace["result"].run_dir) in capsys.readouterr().out


def test_import_xtune_does_not_import_tensorflow():
    code = (
        "import sys, xtune; assert xtune.__version__;"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules;"
        "assert callable(xtune.load) and callable(xtune.train)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
