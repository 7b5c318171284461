//! Build automation for Starling's mobile bindings.
//!
//! ```text
//! cargo run -p xtask -- bindgen [--lib PATH]   regenerate Kotlin (JVM + Android) and Swift bindings
//! cargo run -p xtask -- android                jniLibs (arm64-v8a, armeabi-v7a, x86_64) + Android Kotlin
//! cargo run -p xtask -- ios                    StarlingFFI.xcframework (iOS, simulator, macOS) + Swift sources
//! cargo run -p xtask -- size                   size of the stripped x86_64 cdylib (mobile profile)
//! ```
//!
//! Mobile libraries use the workspace's `mobile` profile (release, `opt-level
//! = "z"`, fat LTO, one codegen unit). Bindings are generated from the
//! unstripped library (uniffi-bindgen reads metadata symbols from it); only
//! the copies that get packaged are stripped.

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

type Result<T = ()> = std::result::Result<T, String>;

/// Android ABIs and their Rust targets.
const ANDROID_ABIS: [(&str, &str); 3] = [
    ("arm64-v8a", "aarch64-linux-android"),
    ("armeabi-v7a", "armv7-linux-androideabi"),
    ("x86_64", "x86_64-linux-android"),
];
/// iOS device and simulator targets.
const IOS_DEVICE: &str = "aarch64-apple-ios";
const IOS_SIMULATORS: [&str; 2] = ["aarch64-apple-ios-sim", "x86_64-apple-ios"];
/// macOS slice, so the Swift package's XCTest suite runs with `swift test`.
const MACOS: [&str; 2] = ["aarch64-apple-darwin", "x86_64-apple-darwin"];
/// Lowest Android API level the AAR supports (keep in sync with
/// bindings/kotlin/android/build.gradle.kts `minSdk`).
const ANDROID_API: &str = "24";
/// Size target for the stripped library.
const SIZE_BUDGET: u64 = 8 * 1024 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("bindgen") => bindgen_cmd(&args[1..]),
        Some("android") => android(),
        Some("ios") => ios(),
        Some("size") => size(),
        _ => {
            eprintln!(
                "usage: cargo run -p xtask -- <bindgen [--lib PATH] | android | ios | size>\n\
                 See bindings/README.md."
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

// ----- paths -------------------------------------------------------------

fn root() -> PathBuf {
    // xtask/ lives directly under the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn host_lib_name() -> &'static str {
    if cfg!(target_os = "macos") {
        "libstarling_ffi.dylib"
    } else if cfg!(windows) {
        "starling_ffi.dll"
    } else {
        "libstarling_ffi.so"
    }
}

// ----- process helpers ---------------------------------------------------

fn run(cmd: &mut Command) -> Result {
    eprintln!("+ {cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{:?} failed: {status}", cmd.get_program()))
    }
}

fn cargo() -> Command {
    let mut c = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    c
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn require(tool: &str, hint: &str) -> Result {
    if have(tool) {
        Ok(())
    } else {
        Err(format!("`{tool}` not found: {hint}"))
    }
}

fn fresh_dir(dir: &Path) -> Result {
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
    }
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

fn copy(from: &Path, to: &Path) -> Result {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))
}

/// Builds the workspace's uniffi-bindgen binaries (debug; small) and returns
/// their directory.
fn build_bindgen() -> Result<PathBuf> {
    run(cargo().args(["build", "-p", "uniffi-bindgen"]))?;
    Ok(target_dir().join("debug"))
}

// ----- bindgen -----------------------------------------------------------

fn bindgen_cmd(args: &[String]) -> Result {
    let lib = match args {
        [flag, path] if flag == "--lib" => PathBuf::from(path),
        [] => {
            run(cargo().args(["build", "-p", "starling-ffi"]))?;
            target_dir().join("debug").join(host_lib_name())
        }
        _ => return Err("usage: bindgen [--lib PATH]".into()),
    };
    let tools = build_bindgen()?;
    kotlin_jvm(&tools, &lib)?;
    kotlin_android(&tools, &lib)?;
    swift(&tools, &lib)
}

/// Kotlin for the JVM (Maven project, tests).
fn kotlin_jvm(tools: &Path, lib: &Path) -> Result {
    let out = root().join("bindings/kotlin/target/generated-sources/uniffi");
    generate_kotlin(tools, lib, &out, None)
}

/// Kotlin for Android (Gradle module), with the Android uniffi config.
fn kotlin_android(tools: &Path, lib: &Path) -> Result {
    let out = root().join("bindings/kotlin/android/src/main/kotlin-generated");
    let config = root().join("bindings/uniffi-android.toml");
    generate_kotlin(tools, lib, &out, Some(&config))
}

/// Regenerates Kotlin from `lib` into a fresh `out`, with an optional
/// uniffi config (the JVM and Android flavours differ only in that).
fn generate_kotlin(tools: &Path, lib: &Path, out: &Path, config: Option<&Path>) -> Result {
    fresh_dir(out)?;
    let mut cmd = Command::new(tools.join("uniffi-bindgen"));
    cmd.args([
        "generate",
        "--no-format",
        "--language",
        "kotlin",
        "--library",
    ])
    .arg(lib);
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    run(cmd.arg("--out-dir").arg(out))
}

/// Swift sources, C header and an XCFramework modulemap.
fn swift(tools: &Path, lib: &Path) -> Result {
    let tmp = target_dir().join("starling-swift-gen");
    fresh_dir(&tmp)?;
    run(Command::new(tools.join("uniffi-bindgen-swift"))
        .args([
            "--swift-sources",
            "--headers",
            "--modulemap",
            "--xcframework",
            "--module-name",
            "StarlingFFI",
            "--modulemap-filename",
            "module.modulemap",
        ])
        .arg(lib)
        .arg(&tmp))?;
    let swift = root().join("bindings/swift");
    copy(
        &tmp.join("Starling.swift"),
        &swift.join("Sources/Starling/Starling.swift"),
    )?;
    let include = swift.join("generated/include");
    fresh_dir(&include)?;
    copy(&tmp.join("StarlingFFI.h"), &include.join("StarlingFFI.h"))?;
    copy(
        &tmp.join("module.modulemap"),
        &include.join("module.modulemap"),
    )
}

// ----- android -----------------------------------------------------------

fn android() -> Result {
    require(
        "cargo-ndk",
        "install it with `cargo install cargo-ndk` and set ANDROID_NDK_HOME",
    )?;
    if env::var_os("ANDROID_NDK_HOME").is_none() && env::var_os("ANDROID_NDK_ROOT").is_none() {
        eprintln!("warning: ANDROID_NDK_HOME is not set; cargo-ndk will try to find the NDK");
    }
    let jni = root().join("bindings/kotlin/android/src/main/jniLibs");
    fresh_dir(&jni)?;
    let mut cmd = cargo();
    cmd.args(["ndk", "--platform", ANDROID_API]);
    for (abi, _) in ANDROID_ABIS {
        cmd.args(["-t", abi]);
    }
    // cargo-ndk copies each library into jniLibs/<abi>/ (stripped); the
    // originals under target/<triple>/mobile/ stay unstripped for bindgen.
    cmd.arg("-o")
        .arg(&jni)
        .args(["build", "-p", "starling-ffi", "--profile", "mobile"]);
    run(&mut cmd)?;

    let unstripped = target_dir()
        .join(ANDROID_ABIS[0].1)
        .join("mobile/libstarling_ffi.so");
    let tools = build_bindgen()?;
    kotlin_android(&tools, &unstripped)?;
    for (abi, _) in ANDROID_ABIS {
        let so = jni.join(abi).join("libstarling_ffi.so");
        let len = fs::metadata(&so)
            .map_err(|e| format!("{} missing: {e}", so.display()))?
            .len();
        eprintln!("{abi}: {} ({})", so.display(), human(len));
    }
    eprintln!(
        "Android inputs ready. Build the AAR with: gradle -p bindings/kotlin/android assembleRelease"
    );
    Ok(())
}

// ----- ios ---------------------------------------------------------------

fn ios() -> Result {
    if !cfg!(target_os = "macos") {
        return Err("the iOS XCFramework can only be built on macOS with Xcode".into());
    }
    require(
        "xcodebuild",
        "install Xcode and run `xcode-select --install`",
    )?;
    require("lipo", "install the Xcode command line tools")?;
    let mut targets = vec![IOS_DEVICE];
    targets.extend(IOS_SIMULATORS);
    targets.extend(MACOS);
    run(Command::new("rustup")
        .args(["target", "add"])
        .args(&targets))?;
    for t in &targets {
        run(cargo().args([
            "build",
            "-p",
            "starling-ffi",
            "--lib",
            "--profile",
            "mobile",
            "--target",
            t,
        ]))?;
    }
    let lib = |t: &str| target_dir().join(t).join("mobile/libstarling_ffi.a");

    // Bindings from the (unstripped) device library.
    let tools = build_bindgen()?;
    swift(&tools, &lib(IOS_DEVICE))?;

    // One fat library each for the simulator and macOS architectures.
    let fat = |name: &str, parts: &[&str]| -> Result<PathBuf> {
        let dir = target_dir().join(name).join("mobile");
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let out = dir.join("libstarling_ffi.a");
        let mut lipo = Command::new("lipo");
        lipo.arg("-create");
        for t in parts {
            lipo.arg(lib(t));
        }
        run(lipo.arg("-output").arg(&out))?;
        Ok(out)
    };
    let sim_lib = fat("ios-simulator-universal", &IOS_SIMULATORS)?;
    let macos_lib = fat("macos-universal", &MACOS)?;

    let headers = root().join("bindings/swift/generated/include");
    let xcframework = root().join("bindings/swift/StarlingFFI.xcframework");
    if xcframework.exists() {
        fs::remove_dir_all(&xcframework).map_err(|e| e.to_string())?;
    }
    run(Command::new("xcodebuild")
        .arg("-create-xcframework")
        .arg("-library")
        .arg(lib(IOS_DEVICE))
        .arg("-headers")
        .arg(&headers)
        .arg("-library")
        .arg(&sim_lib)
        .arg("-headers")
        .arg(&headers)
        .arg("-library")
        .arg(&macos_lib)
        .arg("-headers")
        .arg(&headers)
        .arg("-output")
        .arg(&xcframework))?;
    eprintln!(
        "{} ready; run `swift test` in bindings/swift",
        xcframework.display()
    );
    Ok(())
}

// ----- size --------------------------------------------------------------

fn size() -> Result {
    run(cargo().args([
        "build",
        "-p",
        "starling-ffi",
        "--lib",
        "--profile",
        "mobile",
    ]))?;
    let lib = target_dir().join("mobile").join(host_lib_name());
    let unstripped = fs::metadata(&lib)
        .map_err(|e| format!("{}: {e}", lib.display()))?
        .len();
    let stripped_path = target_dir()
        .join("mobile")
        .join(format!("stripped-{}", host_lib_name()));
    copy(&lib, &stripped_path)?;
    let strip_args: &[&str] = if cfg!(target_os = "macos") {
        &["-x"]
    } else {
        &["--strip-all"]
    };
    run(Command::new("strip")
        .args(strip_args)
        .arg(OsStr::new(&stripped_path)))?;
    let stripped = fs::metadata(&stripped_path)
        .map_err(|e| e.to_string())?
        .len();
    println!(
        "{} ({}, profile mobile): {} unstripped, {} stripped (budget {})",
        host_lib_name(),
        env::consts::ARCH,
        human(unstripped),
        human(stripped),
        human(SIZE_BUDGET)
    );
    if stripped > SIZE_BUDGET {
        return Err(format!(
            "stripped library is {} over the budget",
            human(stripped - SIZE_BUDGET)
        ));
    }
    Ok(())
}

fn human(bytes: u64) -> String {
    format!(
        "{:.2} MiB ({bytes} bytes)",
        bytes as f64 / (1024.0 * 1024.0)
    )
}
