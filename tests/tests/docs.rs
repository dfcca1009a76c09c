//! The docs agree with each other and with what the daemon does: a newcomer
//! reading two pages must never meet two answers to one question.

use porter_tests::workspace_root;

fn read(rel: &str) -> String {
    std::fs::read_to_string(workspace_root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every file a user reads for setting up the MQTT password.
const PASSWORD_PAGES: [&str; 8] = [
    "docs/mqtt.md",
    "docs/install.md",
    "docs/config.md",
    "packaging/porter.toml",
    "configs/raspberry-pi.toml",
    "configs/usb.toml",
    "configs/larger-room.toml",
    "configs/kiosk.toml",
];

/// One path for the MQTT password file, and one owner and mode: the ones
/// `porterctl doctor` advises (root:porter 0640: the daemon reads it and
/// cannot change it) and the package removes on purge.
#[test]
fn the_mqtt_password_file_has_one_path_and_one_mode_everywhere() {
    let doctor = read("daemon/src/doctor.rs");
    assert!(doctor.contains("sudo chown root:porter {} && sudo chmod 0640 {}"), "doctor's advice changed");
    assert!(read("packaging/debian/postrm").contains("/etc/porter/mqtt.pass"), "postrm no longer purges it");
    for page in PASSWORD_PAGES {
        let text = read(page);
        for line in text.lines().filter(|l| l.trim_start_matches(['#', ' ']).starts_with("password_file =")) {
            assert!(line.contains("\"/etc/porter/mqtt.pass\""), "{page}: another password file path: {line}");
        }
        let other_mode = text.lines().find(|l| l.contains("password") && (l.contains("0600") || l.contains("0400")));
        assert!(
            other_mode.is_none(),
            "{page}: the password file with another mode than root:porter 0640: {other_mode:?}"
        );
    }
    // The password is typed, not written on a command line (the shell's history, ps).
    let steps = read("docs/install.md");
    let on_the_line = steps.lines().find(|l| l.contains("mqtt.pass") && l.contains("tee") && l.contains("echo"));
    assert!(on_the_line.is_none(), "install.md: the password on a command line: {on_the_line:?}");
    let mqtt = read("docs/mqtt.md");
    let row = mqtt.lines().find(|l| l.starts_with("| `password_file`")).expect("mqtt.md's password_file row");
    assert!(row.contains("root:porter") && row.contains("0640"), "mqtt.md's row says no owner and mode: {row}");
}

/// An example that needs PC/SC or OSDP says so in its header, with the
/// command that checks it: the README's demo build has neither, and its
/// check-config refuses those kinds (naming the same command).
#[test]
fn examples_that_need_a_feature_say_how_to_check_them() {
    for entry in std::fs::read_dir(workspace_root().join("configs")).unwrap() {
        let p = entry.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        let header: String = text.lines().take_while(|l| l.starts_with('#')).collect::<Vec<_>>().join("\n");
        for (kind, feature) in [("pcsc", "PC/SC"), ("osdp", "OSDP")] {
            if text.contains(&format!("kind = \"{kind}\"")) {
                assert!(header.contains(feature), "{}: its header does not say it needs {feature}", p.display());
                assert!(
                    header.contains("--features pcsc,osdp --bin porterd -- check-config"),
                    "{}: its header does not say how to check it",
                    p.display()
                );
            }
        }
    }
    let kinds = read("drivers/src/kinds.rs");
    assert!(kinds.contains("`cargo run -p porterd --features pcsc,osdp --bin porterd -- check-config --config FILE`"));
}

/// The fenced block of `page` that follows the heading `heading`.
fn block_after(page: &str, heading: &str) -> String {
    let text = read(page);
    let at = text.find(heading).unwrap_or_else(|| panic!("{page}: no `{heading}`"));
    let rest = &text[at..];
    let start = rest.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let end = rest[start..].find("```").expect("the block's end");
    rest[start..start + end].to_string()
}

/// What the Debian package installs: (source, absolute destination, mode),
/// from `[package.metadata.deb] assets` in daemon/Cargo.toml.
fn package_assets() -> Vec<(String, String, String)> {
    let cargo = read("daemon/Cargo.toml");
    let at = cargo.find("assets = [").expect("the package's assets");
    cargo[at..]
        .lines()
        .skip(1)
        .take_while(|l| l.trim() != "]")
        .map(|l| {
            let v: Vec<String> = serde_json::from_str(l.trim().trim_end_matches(',')).expect("an asset line");
            let dest = if v[1].ends_with('/') {
                format!("/{}{}", v[1], v[0].rsplit('/').next().unwrap())
            } else {
                format!("/{}", v[1])
            };
            (v[0].clone(), dest, v[2].clone())
        })
        .collect()
}

/// docs/install.md's "Building by hand" makes what the package would: each
/// file it installs goes where the package puts it, with the package's mode,
/// from a file that is in the source tree; the user joins the groups the
/// package's postinst adds it to; and the build is the README's.
#[test]
fn building_by_hand_installs_what_the_package_installs() {
    let steps = block_after("docs/install.md", "## Building by hand");
    let assets = package_assets();
    let mut installed = 0;
    for line in steps.lines().filter(|l| l.starts_with("sudo install -m ")) {
        let words: Vec<&str> = line.split('#').next().unwrap().split_whitespace().collect();
        let mode = words[3].trim_start_matches('0');
        let (dest, sources) = words[4..].split_last().expect("sources and a destination");
        for src in sources {
            let path = if dest.ends_with('/') {
                format!("{dest}{}", src.rsplit('/').next().unwrap())
            } else {
                dest.to_string()
            };
            let asset = assets.iter().find(|(_, d, _)| *d == path);
            let (package_src, _, package_mode) =
                asset.unwrap_or_else(|| panic!("{line}: the package installs no {path}"));
            assert_eq!(mode, package_mode, "{line}: {path} has mode {package_mode} in the package");
            assert_eq!(
                package_src.trim_start_matches("../"),
                *src,
                "{line}: the package installs {path} from another file"
            );
            if !src.starts_with("target/") {
                assert!(workspace_root().join(src).is_file(), "{line}: no {src} in the source tree");
            }
            installed += 1;
        }
    }
    assert!(installed >= 8, "install.md's steps install {installed} files:\n{steps}");
    // Every file the package installs but the docs and examples is made by hand too.
    for (src, dest, _) in &assets {
        if dest.starts_with("/usr/share/doc/") {
            continue;
        }
        assert!(
            steps.contains(dest.as_str()) || steps.contains(dest.rsplit_once('/').unwrap().0),
            "{src}: {dest} is not made by hand"
        );
    }
    let postinst = read("packaging/debian/postinst");
    let groups = postinst.lines().find_map(|l| l.trim().strip_prefix("for g in ")).expect("postinst's groups");
    let groups: Vec<&str> = groups.trim_end_matches("; do").split_whitespace().collect();
    assert!(!groups.is_empty());
    for g in groups {
        assert!(steps.contains(g) && steps.contains("usermod -aG"), "the steps by hand do not add porter to {g}");
    }
    // What the build needs, said before it: pcsc-sys finds libpcsclite with
    // pkg-config, libosdp-sys compiles C and runs git (as the test deps install).
    let install = read("docs/install.md");
    let needs = &install[install.find("## Building by hand").unwrap()..install.find(&steps).unwrap()];
    let deps = read("scripts/install-test-deps.sh");
    for tool in ["gcc", "git", "libpcsclite-dev", "pkg-config"] {
        assert!(needs.contains(tool), "install.md's building by hand does not say it needs {tool}");
        assert!(deps.contains(&format!(" {tool}")), "install-test-deps.sh no longer installs {tool}");
    }
    let build = steps.lines().next().expect("the build");
    assert!(build.starts_with("cargo build --release --locked -p porterd --features pcsc,osdp"), "{build}");
    // The kiosk is its own crate, built beside porterd as scripts/package.sh builds it.
    let kiosk = steps.lines().nth(1).expect("the kiosk's build");
    assert_eq!(kiosk, "cargo build --release --locked -p porter-kiosk", "install.md's second line");
    assert!(read("scripts/package.sh").contains("cargo build --release --locked -p porter-kiosk"));
    let readme = read("README.md");
    for l in readme.lines().filter(|l| l.starts_with("cargo build --release")) {
        assert!(l.starts_with(build), "README builds another way than install.md's steps: {l}");
    }
    assert!(readme.contains("(docs/install.md#building-by-hand)"), "README does not send a hand build to install.md");
    assert!(
        readme.contains("apt-get install libpcsclite-dev pkg-config"),
        "README's build does not say it needs pkg-config"
    );
}

/// The package file a reader installs is the one scripts/package.sh makes:
/// `porter_<version>-1_<arch>.deb`, in target/packages/ of the tree it was
/// built in.
#[test]
fn the_package_file_named_in_the_docs_is_the_one_package_sh_makes() {
    let workspace = read("Cargo.toml");
    let version = workspace
        .lines()
        .find_map(|l| l.strip_prefix("version = "))
        .expect("the workspace version")
        .trim_matches('"')
        .to_string();
    assert!(read("daemon/Cargo.toml").contains("name = \"porter\""));
    assert!(read("scripts/package.sh").contains("target/packages/"));
    let readme = read("README.md");
    let mut named = 0;
    for page in ["README.md", "docs/install.md"] {
        for line in read(page).lines().filter(|l| l.contains("apt install ./")) {
            for (at, _) in line.match_indices("porter_") {
                let file = &line[at..at + line[at..].find(".deb").expect("a .deb") + ".deb".len()];
                assert!(
                    [format!("porter_{version}-1_amd64.deb"), format!("porter_{version}-1_arm64.deb")]
                        .contains(&file.to_string()),
                    "{page}: {file} is not a file package.sh makes (version {version}): {line}"
                );
                named += 1;
            }
        }
    }
    assert!(named >= 2, "no package named");
    // The README builds in the source tree: its install names where package.sh put it.
    let install = readme.lines().find(|l| l.contains("apt install ./")).expect("README's install");
    assert!(install.contains("./target/packages/porter_"), "{install}");
    // package.sh refuses what it cannot build, and says so.
    let out = std::process::Command::new("bash")
        .arg(workspace_root().join("scripts/package.sh"))
        .arg("x86")
        .output()
        .expect("bash");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: scripts/package.sh [amd64|arm64|all]"));
}

/// check-config's hint for a missing secret_file names the path the package's
/// config uses, in the folder the service may write (its StateDirectory): a
/// secret anywhere else must exist before the first start.
#[test]
fn the_secret_file_hint_is_where_the_service_may_write() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("porter.toml");
    let text = read("packaging/porter.toml");
    let packaged =
        text.lines().find(|l| l.starts_with("secret_file = ")).expect("the package's secret_file").to_string();
    std::fs::write(&cfg, text.replace(&packaged, "")).unwrap();
    let (code, _, err) = porter_tests::check_config(&cfg);
    assert_eq!(code, 64, "{err}");
    let line = err.lines().find(|l| l.contains("secret_file: missing required key")).unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains(&format!("(hint: set {packaged})")), "the hint is not the package's {packaged}: {line}");
    assert!(read("packaging/porterd.service").contains("StateDirectory=porter"));
    assert!(packaged.contains("\"/var/lib/porter/"), "{packaged}");
}

/// Every page under docs/ is in the README's list, where a newcomer looks.
#[test]
fn the_readme_lists_every_page_of_the_docs() {
    let readme = read("README.md");
    let at = readme.find("## Documentation").expect("README's documentation list");
    let list = &readme[at..at + readme[at..].find("\n## Layout").expect("the next section")];
    for entry in std::fs::read_dir(workspace_root().join("docs")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            assert!(list.contains(&format!("(docs/{name})")), "README's list has no docs/{name}");
        }
    }
}

/// install.md's example of a device doctor finds the service's user may not
/// open is the line doctor prints: a node of group dialout, mode 0660, for a
/// user outside the group (`nobody` here, `porter` in the example).
#[test]
fn install_md_shows_doctors_own_finding_for_a_forbidden_device() {
    let install = read("docs/install.md");
    let shown = install.lines().find(|l| l.starts_with("FIX   device `qr-scanner`")).expect("the example").to_string();
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("ttyACM0");
    std::fs::write(&node, "").unwrap();
    let groups = std::fs::read_to_string("/etc/group").unwrap();
    let dialout: u32 = groups
        .lines()
        .find_map(|l| l.strip_prefix("dialout:x:"))
        .and_then(|rest| rest.split(':').next()?.parse().ok())
        .expect("group dialout (Debian's)");
    std::os::unix::fs::chown(&node, Some(0), Some(dialout))
        .expect("root, as the tests run in CI: chown to root:dialout");
    std::fs::set_permissions(&node, std::os::unix::fs::PermissionsExt::from_mode(0o660)).unwrap();
    let cfg = dir.path().join("porter.toml");
    let text = format!(
        "{}\n[[doors]]\nid = \"main\"\nlock = \"lock\"\n\n[[devices]]\nid = \"lock\"\nkind = \"sim_lock\"\n\n\
         [[devices]]\nid = \"qr-scanner\"\nkind = \"serial_qr\"\ndoor = \"main\"\nport = \"{}\"\n",
        porter_tests::config_head(dir.path()),
        node.display()
    );
    std::fs::write(&cfg, text).unwrap();
    let (_, out) = porter_tests::doctor(&cfg, "nobody");
    let printed = out
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("FIX   device `qr-scanner`"))
        .unwrap_or_else(|| panic!("{out}"));
    let expected = shown
        .replace("/dev/ttyACM0", &node.display().to_string())
        .replace("porter may not open", "nobody may not open")
        .replace("Add porter to", "Add nobody to")
        .replace("dialout porter,", "dialout nobody,");
    assert_eq!(printed, expected, "install.md's example is not what doctor prints");
}
