"""Python half of the executor child (embedded in sealtune-worker; not a public module)."""

import os
import runpy
import site
import sys
import traceback


def setup(venv):
    """Put the venv's site-packages on sys.path and make subprocesses use the venv's python."""
    if not venv:
        return
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    packages = os.path.join(venv, "lib", version, "site-packages")
    if os.path.isdir(packages):
        site.addsitedir(packages)
    python = os.path.join(venv, "bin", "python")
    if os.path.exists(python):
        # sys.executable is the worker binary otherwise: multiprocessing's spawn would start a worker.
        sys.executable = python
        import multiprocessing

        multiprocessing.set_executable(python)


def prepare_jsonl(jsonl, data_path, cache_dir):
    """Turn the normalised JSONL into a DatasetDict with a `train` split, as 0G's setup does, plus a
    `validation` split from the zip's `validation*.jsonl` entries when prepare.rs wrote them beside it
    (`<name>.validation.jsonl`)."""
    import datasets

    datasets.disable_progress_bars()
    splits = {"train": datasets.Dataset.from_json(jsonl, cache_dir=cache_dir)}
    validation = os.path.splitext(jsonl)[0] + ".validation.jsonl"
    if os.path.exists(validation):
        splits["validation"] = datasets.Dataset.from_json(validation, cache_dir=cache_dir)
    datasets.DatasetDict(splits).save_to_disk(data_path)


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def run(script, argv):
    """Run the script as __main__; None on success, else the reason (the exception's last line)."""
    sys.argv = [script, *argv]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        code = exc.code
        if code is None or code == 0:
            return None
        if isinstance(code, int):
            return f"the script exited with status {code}"
        return f"the script exited: {code}"
    except BaseException as exc:  # noqa: BLE001 - every failure becomes the task's reason
        traceback.print_exc()
        return traceback.format_exception_only(type(exc), exc)[-1].strip()
    finally:
        _flush()
    return None
