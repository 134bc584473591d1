//! `sealtune-image`: build the worker's OCI image layout from directories, reproducibly, or unpack one.
//! `scripts/build-image` is the usual caller.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Reproducible OCI image layouts without a container daemon (the same inputs give the same digest).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the OCI layout of a spec's variant from one directory per layer; prints the manifest digest.
    Build {
        /// The image spec (deploy/image.toml).
        #[arg(long)]
        spec: PathBuf,
        /// The variant of the spec (`cpu`, `cuda`).
        #[arg(long)]
        variant: String,
        /// `<name>=<dir>` for every layer of the spec: the directory's contents are the layer.
        #[arg(long = "layer", value_parser = parse_layer, required = true)]
        layers: Vec<(String, PathBuf)>,
        /// The layout directory to write (empty or missing).
        #[arg(long)]
        out: PathBuf,
        /// Print a JSON report (digest, reference, layers with their sizes) instead of the digest.
        #[arg(long)]
        json: bool,
    },
    /// Unpack an image of a layout into a directory, checking every digest; prints the manifest digest.
    Unpack {
        /// The OCI layout directory.
        #[arg(long)]
        layout: PathBuf,
        /// The reference in index.json (`0.1.0-cpu`); default: the only image.
        #[arg(long = "ref")]
        reference: Option<String>,
        /// The root file system to write.
        #[arg(long)]
        out: PathBuf,
    },
}

fn parse_layer(s: &str) -> Result<(String, PathBuf), String> {
    s.split_once('=')
        .map(|(n, d)| (n.to_owned(), PathBuf::from(d)))
        .ok_or_else(|| format!("{s:?} is not <name>=<dir>"))
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sealtune-image: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Build {
            spec,
            variant,
            layers,
            out,
            json,
        } => {
            let text = std::fs::read_to_string(&spec)
                .map_err(|e| format!("read {}: {e}", spec.display()))?;
            let spec = sealtune_image::ImageSpec::from_toml(&text)?;
            let built = sealtune_image::build(&spec, &variant, &layers, &out)?;
            if json {
                let layers: Vec<_> = built
                    .layers
                    .iter()
                    .zip(&spec.layers)
                    .map(|((d, s), l)| {
                        serde_json::json!({"name": l.name, "digest": d.digest, "size": d.size,
                            "files": s.files, "bytes": s.bytes, "skipped_special_files": s.skipped})
                    })
                    .collect();
                let report = serde_json::json!({"digest": built.manifest_digest, "reference": built.reference,
                    "name": spec.name, "layers": layers});
                println!("{report}");
            } else {
                println!("{}", built.manifest_digest);
            }
        }
        Command::Unpack {
            layout,
            reference,
            out,
        } => {
            println!(
                "{}",
                sealtune_image::unpack(&layout, reference.as_deref(), &out)?
            );
        }
    }
    Ok(())
}
