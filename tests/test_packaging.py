"""The package as users install it: a wheel built from the checkout carries its recipes and
ablation studies, and `mobilevit models` / `mobilevit ablate STUDY --help` work from an install
outside the checkout (nothing read from the source tree)."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0 and "No module named" in proc.stderr:
        pytest.skip(f"cannot build a wheel here: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr
    (path,) = out.glob("mobilevit-*.whl")
    return path


def test_the_wheel_ships_the_recipes_and_studies(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    studies = {"weight-decay", "skip-connection", "patch-size", "ema-label-smoothing"}
    assert {f"mobilevit/recipes/ablations/{s}.yaml" for s in studies} <= names
    assert "mobilevit/recipes/demo_digits.yaml" in names  # the recipe the studies start from
    assert not any(n.startswith(("tests/", "benchmarks/", "configs/")) for n in names)


@pytest.mark.slow
@pytest.mark.subprocess
def test_installed_outside_the_checkout(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        timeout=300,
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    script = (
        "import sys, mobilevit; from mobilevit.cli import main; "
        f"assert mobilevit.__file__.startswith({str(target)!r}), mobilevit.__file__; "
        "sys.exit(main(sys.argv[1:]))"
    )

    def run(*args):
        return subprocess.run(
            [sys.executable, "-c", script, *args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    models = run("models", "mobilevit_*")
    assert models.returncode == 0, models.stderr
    assert "mobilevit_s" in models.stdout and "5,578,632" in models.stdout
    helped = run("ablate", "patch-size", "--help")
    assert helped.returncode == 0 and "--latency-iters" in helped.stdout, helped.stderr
    planned = run(
        "ablate", "patch-size", "--epochs", "1", "--out-dir", str(work / "nothing"), "--data", "nowhere"
    )
    assert planned.returncode == 2 and "--data 'nowhere' is neither a built-in set" in planned.stderr


@pytest.mark.slow
@pytest.mark.subprocess
def test_pip_install_in_a_clean_venv(tmp_path):
    """`pip install .` into a new virtual environment resolves the declared ranges (held to the tested
    versions by constraints.txt), and the installed package imports and runs `mobilevit models`."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python, program = venv / "bin" / "python", venv / "bin" / "mobilevit"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-c", str(REPO / "constraints.txt"), str(REPO)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert install.returncode == 0, install.stderr[-4000:]
    work = tmp_path / "elsewhere"
    work.mkdir()

    def run(*args):
        return subprocess.run(args, cwd=work, capture_output=True, text=True, timeout=300)

    imported = run(str(python), "-c", "import mobilevit, torch; print(mobilevit.__file__, torch.__version__)")
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith(str(venv)), imported.stdout  # the installed copy, not the checkout
    models = run(str(program), "models", "mobilevit_*")
    assert models.returncode == 0, models.stderr
    assert "mobilevit_xxs" in models.stdout and "1,272,024" in models.stdout
