//! `plugin bundle`: turns a Dify plugin package (`.difypkg`, a zip) into one whose Python dependencies install
//! without an index, for an air-gapped cluster.
//!
//! The plugin daemon (0.6.x, `internal/core/local_runtime/setup_python_environment.go`) installs a package's
//! dependencies with `uv sync --no-dev [--frozen]` when it has a `pyproject.toml`, else with
//! `uv pip install -r requirements.txt`; a requirements file may carry `--no-index` and `--find-links`, and uv honours
//! them. So the bundle drops `pyproject.toml` and `uv.lock`, and its `requirements.txt` pins every dependency (with
//! hashes) to the wheels it carries in `wheels/`. The pins are the package's own (its `uv.lock`, else its
//! `requirements.txt`), narrowed to the target platform by `uv pip compile`; pip, pinned here and run by `uv tool
//! run`, downloads the wheels (uv has no download command). Both need the network, once, on the connected machine.
//!
//! Repackaging breaks the package's signature, so the bundle is unsigned: the daemon installs it with
//! `FORCE_VERIFYING_SIGNATURE=false` (chart: `pluginDaemon.forceVerifyingSignature`), or after re-signing it.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;

/// pip that downloads the wheels: `uv tool run --from pip==<this>`.
pub const PIP_VERSION: &str = "26.3";
/// The daemon's and the chart's limit on a package's uncompressed size (`MAX_PLUGIN_PACKAGE_SIZE`, and the api's
/// `PLUGIN_MAX_PACKAGE_SIZE` that the chart sets to the same 50 MiB).
pub const PACKAGE_LIMIT: u64 = 52_428_800;
/// What the bundle removes: the daemon would run `uv sync` from these (and the lock's URLs are PyPI's); the
/// verification file belongs to the signature the bundle no longer has.
const DROPPED: &[&str] = &["pyproject.toml", "uv.lock", ".verification.dify.json"];
const WHEELS: &str = "wheels";
const REQUIREMENTS: &str = "requirements.txt";

/// What `bundle` needs: plain values, no clap.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub input: PathBuf,
    pub output: PathBuf,
    /// A manylinux platform tag: `manylinux_2_39_x86_64`, `manylinux2014_x86_64`, ...
    pub platform: String,
    /// The target Python's `major.minor` (the daemon creates its virtualenvs with `--python 3.12`).
    pub python: String,
    /// A PyPI-compatible simple index instead of the tools' default (PyPI, or the uv/pip configuration).
    pub index_url: Option<String>,
    /// The uv program (default: `uv` on PATH).
    pub uv: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub input: PathBuf,
    pub output: PathBuf,
    pub platform: String,
    pub python: String,
    /// Where the pins came from: `uv.lock`, `requirements.txt` or `pyproject.toml`.
    pub pins_from: String,
    pub wheels: usize,
    pub input_bytes: u64,
    pub output_bytes: u64,
    /// The sum of the entries' sizes, what the daemon compares with its limit.
    pub uncompressed_bytes: u64,
    pub removed: Vec<String>,
    pub seconds: f64,
    /// Said when the bundle is over the daemon's default package limit.
    pub warnings: Vec<String>,
}

/// The platform tags a manylinux tag stands for, for pip (newest first, legacy aliases included), and uv's name of
/// the target for `--python-platform`.
pub fn platform_tags(platform: &str) -> Result<(Vec<String>, String)> {
    let re = regex::Regex::new(r"^manylinux(?:_2_(\d+)|(2014|2010|1))_(x86_64|aarch64)$").unwrap();
    let bad = || {
        anyhow::anyhow!(
            "--platform {platform}: not a manylinux platform tag; use e.g. manylinux_2_39_x86_64 (the daemon's \
             Ubuntu 24.04 image), manylinux_2_28_aarch64 or manylinux2014_x86_64"
        )
    };
    let caps = re.captures(platform).ok_or_else(bad)?;
    let arch = &caps[3];
    let minor: u32 = match (caps.get(1), caps.get(2).map(|m| m.as_str())) {
        (Some(m), _) => m.as_str().parse().map_err(|_| bad())?,
        (None, Some("2014")) => 17,
        (None, Some("2010")) => 12,
        _ => 5,
    };
    if !(17..=99).contains(&minor) {
        bail!(
            "--platform {platform}: glibc 2.{minor} is older than manylinux2014 (glibc 2.17), which uv needs at least"
        )
    }
    let mut tags: Vec<String> = (5..=minor).rev().map(|m| format!("manylinux_2_{m}_{arch}")).collect();
    tags.extend(["manylinux2014", "manylinux2010", "manylinux1"].map(|t| format!("{t}_{arch}")));
    Ok((tags, format!("{arch}-manylinux_2_{minor}")))
}

fn check_python(python: &str) -> Result<()> {
    let ok = python
        .split_once('.')
        .is_some_and(|(major, minor)| major == "3" && !minor.is_empty() && minor.chars().all(|c| c.is_ascii_digit()));
    if !ok {
        bail!("--python {python}: give the target Python as 3.<minor>, e.g. 3.12 (what the plugin daemon uses)")
    }
    Ok(())
}

/// Builds the bundle. On any failure nothing is left at `output` (it is written to a temporary file beside it and
/// renamed at the end) and the temporary directory is removed.
pub fn bundle(inputs: &Inputs) -> Result<Report> {
    let start = Instant::now();
    let (pip_platforms, uv_platform) = platform_tags(&inputs.platform)?;
    check_python(&inputs.python)?;
    let input = &inputs.input;
    let bytes = std::fs::read(input).with_context(|| format!("reading the plugin package {}", input.display()))?;
    let entries = read_package(&bytes)
        .with_context(|| format!("{} is not a Dify plugin package (.difypkg, a zip archive)", input.display()))?;
    let has = |name: &str| entries.iter().any(|(n, _)| n == name);
    if !has("manifest.yaml") {
        bail!(
            "{}: no manifest.yaml at the package's root; give a .difypkg made by `dify plugin package`",
            input.display()
        )
    }
    if entries.iter().any(|(n, _)| n.starts_with("wheels/")) {
        bail!("{}: already has a wheels/ directory (an offline bundle?); bundle the original package", input.display())
    }
    // The bundle's file, beside the output (so the final rename stays on one file system), before the slow work.
    let out_dir = match inputs.output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let partial = tempfile::Builder::new()
        .prefix(".plugin-bundle.")
        .tempfile_in(&out_dir)
        .with_context(|| format!("creating a file in {} for the bundle", out_dir.display()))?;
    let work =
        tempfile::Builder::new().prefix("dify-gitops-plugin-bundle.").tempdir().context("creating a temp dir")?;
    let project = work.path().join("package");
    // The whole package, so that a requirements file's own `-r other.txt` finds its include.
    for (name, data) in &entries {
        let path = project.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).context("unpacking the package")?;
        std::fs::write(&path, data).context("unpacking the package")?;
    }

    let uv = Tool::find(&inputs.uv)?;
    // The pins: the lock's when there is one, as the daemon would have used it.
    let (pins_from, source) = if has("uv.lock") && has("pyproject.toml") {
        let exported = work.path().join("exported.txt");
        let mut export = uv.command();
        export.current_dir(&project).args(["export", "--frozen", "--no-dev", "--no-emit-project", "--no-header"]);
        export.args(["--no-annotate", "--no-hashes", "--format", "requirements-txt", "-o"]).arg(&exported);
        uv.run(export, "exporting the pins of uv.lock", input)?;
        ("uv.lock", exported)
    } else if has(REQUIREMENTS) {
        (REQUIREMENTS, project.join(REQUIREMENTS))
    } else if has("pyproject.toml") {
        ("pyproject.toml", project.join("pyproject.toml"))
    } else {
        bail!("{}: neither requirements.txt nor pyproject.toml; the daemon needs one of them", input.display())
    };

    // The same pins for the target only (markers of other platforms dropped), with the hashes uv checks on install.
    let compiled = work.path().join("compiled.txt");
    let mut compile = uv.command();
    compile.current_dir(work.path()).args(["pip", "compile", "--native-tls", "--quiet"]).arg(&source);
    compile.args(["--python-version", &inputs.python, "--python-platform", &uv_platform]);
    compile.args(["--no-header", "--no-annotate", "--generate-hashes", "-o"]).arg(&compiled);
    if let Some(url) = &inputs.index_url {
        compile.args(["--index-url", url]);
    }
    uv.run(
        compile,
        &format!("resolving the pins of {pins_from} for {} and Python {}", inputs.platform, inputs.python),
        input,
    )?;

    let wheels = work.path().join(WHEELS);
    let mut download = uv.command();
    download.current_dir(work.path()).args(["tool", "run", "--native-tls", "--from", &format!("pip=={PIP_VERSION}")]);
    download.args(["pip", "download", "--no-deps", "--only-binary=:all:", "--implementation", "cp"]);
    download.args(["--python-version", &inputs.python, "--disable-pip-version-check", "--progress-bar", "off"]);
    for tag in &pip_platforms {
        download.args(["--platform", tag]);
    }
    if let Some(url) = &inputs.index_url {
        download.args(["--index-url", url]);
    }
    download.arg("-r").arg(&compiled).arg("-d").arg(&wheels);
    uv.run(
        download,
        &format!(
            "downloading the wheels with pip {PIP_VERSION} (a dependency without a wheel for {} and CPython {} \
             cannot be bundled: build its wheel, or choose another --platform)",
            inputs.platform, inputs.python
        ),
        input,
    )?;

    let pins = std::fs::read_to_string(&compiled).context("reading the resolved pins")?;
    let requirements = format!(
        "# Offline bundle (dify-gitops plugin bundle, {} CPython {}): installs from wheels/ only.\n\
         # Pins from the package's {pins_from}.\n--no-index\n--find-links ./{WHEELS}\n{pins}",
        inputs.platform, inputs.python
    );
    let mut wheel_files: Vec<PathBuf> = std::fs::read_dir(&wheels)
        .context("listing the downloaded wheels")?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    wheel_files.sort();

    let removed: Vec<String> =
        entries.iter().map(|(n, _)| n.clone()).filter(|n| DROPPED.contains(&n.as_str())).collect();
    let uncompressed = write_bundle(partial.as_file(), &entries, &requirements, &wheel_files)
        .with_context(|| format!("writing the bundle beside {}", inputs.output.display()))?;
    partial.persist(&inputs.output).with_context(|| format!("moving the bundle to {}", inputs.output.display()))?;

    let mut warnings = Vec::new();
    if uncompressed > PACKAGE_LIMIT {
        warnings.push(format!(
            "the bundle holds {} MiB, over the 50 MiB the plugin daemon (MAX_PLUGIN_PACKAGE_SIZE) and the chart's api \
             (PLUGIN_MAX_PACKAGE_SIZE) accept: raise both through pluginDaemon.extraEnv and api.extraEnv",
            uncompressed.div_ceil(1 << 20)
        ));
    }
    Ok(Report {
        input: input.clone(),
        output: inputs.output.clone(),
        platform: inputs.platform.clone(),
        python: inputs.python.clone(),
        pins_from: pins_from.to_string(),
        wheels: wheel_files.len(),
        input_bytes: bytes.len() as u64,
        output_bytes: std::fs::metadata(&inputs.output)?.len(),
        uncompressed_bytes: uncompressed,
        removed,
        seconds: start.elapsed().as_secs_f64(),
        warnings,
    })
}

/// The package's files in archive order (directories left out); a name that would leave the package is refused.
fn read_package(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))?;
    let mut entries = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let mut file = archive.by_index(i)?;
        if file.is_dir() {
            continue;
        }
        let name = file.name()?.to_string();
        if file.enclosed_name().is_none() {
            bail!("entry {name:?} points outside the package");
        }
        let mut data = Vec::with_capacity(file.size() as usize);
        file.read_to_end(&mut data).with_context(|| format!("reading entry {name}"))?;
        entries.push((name, data));
    }
    Ok(entries)
}

/// Writes the package's files (the dropped ones left out, requirements.txt replaced), then the wheels; returns the
/// sum of the entries' sizes. Wheels are zips already: they are stored, not compressed again.
fn write_bundle(file: &File, entries: &[(String, Vec<u8>)], requirements: &str, wheels: &[PathBuf]) -> Result<u64> {
    use zip::write::SimpleFileOptions;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let deflated = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let stored = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut total = 0u64;
    let mut put = |zip: &mut zip::ZipWriter<_>, name: &str, data: &[u8], options| -> Result<()> {
        zip.start_file(name, options)?;
        zip.write_all(data)?;
        total += data.len() as u64;
        Ok(())
    };
    for (name, data) in entries {
        if DROPPED.contains(&name.as_str()) || name == REQUIREMENTS {
            continue;
        }
        put(&mut zip, name, data, deflated)?;
    }
    put(&mut zip, REQUIREMENTS, requirements.as_bytes(), deflated)?;
    for wheel in wheels {
        let name = wheel.file_name().unwrap().to_string_lossy();
        let data = std::fs::read(wheel).with_context(|| format!("reading {}", wheel.display()))?;
        put(&mut zip, &format!("{WHEELS}/{name}"), &data, stored)?;
    }
    let mut writer = zip.finish()?;
    writer.flush()?;
    writer.get_ref().sync_all()?;
    Ok(total)
}

/// The external program `bundle` needs (uv), checked before the first use so its absence is named.
struct Tool {
    path: PathBuf,
}

impl Tool {
    fn find(program: &Path) -> Result<Tool> {
        match Command::new(program).arg("--version").output() {
            Ok(out) if out.status.success() => Ok(Tool { path: program.to_path_buf() }),
            Ok(out) => bail!(
                "`{} --version` failed ({}): plugin bundle needs a working uv",
                program.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => bail!(
                "plugin bundle needs uv ({}: {e}): install it (https://docs.astral.sh/uv/, e.g. `pip install uv`) \
                 or name it with --uv; it resolves the pins and runs pip {PIP_VERSION} to download the wheels",
                program.display()
            ),
        }
    }

    fn command(&self) -> Command {
        Command::new(&self.path)
    }

    /// Runs `command`; on failure the error says what step failed for which package, with the tool's own message.
    fn run(&self, mut command: Command, what: &str, package: &Path) -> Result<()> {
        tracing::info!("{what}");
        tracing::debug!("running {command:?}");
        let out = command.output().with_context(|| format!("{what}: starting {}", self.path.display()))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
            bail!("{}: {what} failed ({}):\n{}", package.display(), out.status, tail.join("\n"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_tags_cover_older_glibc_and_legacy_names() {
        let (tags, uv) = platform_tags("manylinux_2_39_x86_64").unwrap();
        assert_eq!(uv, "x86_64-manylinux_2_39");
        assert_eq!(tags.first().unwrap(), "manylinux_2_39_x86_64");
        for t in ["manylinux_2_17_x86_64", "manylinux_2_5_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"] {
            assert!(tags.contains(&t.to_string()), "{t} missing from {tags:?}");
        }
        assert_eq!(platform_tags("manylinux2014_aarch64").unwrap().1, "aarch64-manylinux_2_17");
        assert!(platform_tags("manylinux2010_x86_64").unwrap_err().to_string().contains("manylinux2014"));
        assert!(platform_tags("win_amd64").unwrap_err().to_string().contains("--platform win_amd64"));
    }

    #[test]
    fn python_must_be_three_dot_minor() {
        assert!(check_python("3.12").is_ok());
        for bad in ["3", "3.12.1", "2.7", "3.x", "py312"] {
            assert!(check_python(bad).unwrap_err().to_string().contains(bad), "{bad}");
        }
    }
}
