//! Smoke test: the worker's embedded CPython (pyo3) is the project venv's interpreter and imports the
//! training stack.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyModule};
use std::path::PathBuf;

fn venv() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv");
    assert!(
        p.join("bin/python").exists(),
        "the project venv is missing at {}: run scripts/setup",
        p.display()
    );
    p
}

#[test]
fn embedded_interpreter_imports_torch_transformers_and_peft_from_the_venv() {
    let site = venv().join("lib/python3.11/site-packages");
    Python::attach(|py| {
        let site_mod = PyModule::import(py, "site").unwrap();
        site_mod
            .call_method1("addsitedir", (site.to_str().unwrap(),))
            .unwrap();
        let sys = PyModule::import(py, "sys").unwrap();
        let version: String = sys.getattr("version").unwrap().extract().unwrap();
        // The venv's own interpreter (scripts/setup picks it: as root one an unprivileged task uid
        // can run, Debian's python3.11 rather than a pyenv build under /root), found through the rpath.
        let venv_version = std::process::Command::new(venv().join("bin/python"))
            .args(["-c", "import sys; print(sys.version)"])
            .output()
            .unwrap();
        let venv_version = String::from_utf8_lossy(&venv_version.stdout)
            .trim()
            .to_owned();
        assert!(
            version.starts_with("3.11") && version == venv_version,
            "expected the venv's CPython ({venv_version}) through the rpath, got {version}"
        );
        let code = c"
import torch, transformers, peft
x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
result = (float((x @ x.T).sum()), torch.__version__, transformers.__version__, peft.__version__)
";
        let globals = PyDict::new(py);
        py.run(code, Some(&globals), None)
            .unwrap_or_else(|e| panic!("import failed: {e}"));
        let (sum, torch_v, tf_v, peft_v): (f64, String, String, String) = globals
            .get_item("result")
            .unwrap()
            .unwrap()
            .extract()
            .unwrap();
        assert_eq!(sum, 83.0, "sum of x @ x.T for x = [[0,1,2],[3,4,5]]");
        assert!(torch_v.starts_with("2.13.0"), "torch {torch_v}");
        assert_eq!(tf_v, "5.23.0");
        assert_eq!(peft_v, "0.21.2");
    });
}
