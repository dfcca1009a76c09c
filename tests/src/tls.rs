//! TLS for the end-to-end tests: a private PKI made with the `openssl`
//! command line, and [`Site`], the broker docs/mqtt.md recommends (its
//! "A Mosquitto configuration" and "ACLs" sections, read from the file and
//! run as they are, with local paths, a free port and site `test`).
//!
//! The certificates are made at run time in a temporary folder: a CA, a
//! server certificate for 127.0.0.1 and localhost, client certificates
//! whose CN is the MQTT identity.

use crate::{open_dir, workspace_root, Broker};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

/// Test certificates, made with the `openssl` command line in a temp folder
/// that mosquitto (which drops from root to its own user) can read.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// The main CA (`ca`) and a server certificate it signed for 127.0.0.1
    /// and localhost (`server`).
    pub fn new() -> Pki {
        let pki = Pki { dir: open_dir() };
        pki.ca("ca", "Porter Test CA");
        pki.issue(
            "ca",
            "server",
            "localhost",
            "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
            false,
        );
        pki
    }

    /// The certificates docs/mqtt.md's shell snippet ("A Mosquitto
    /// configuration") makes, made by running that snippet (site `test`
    /// for `oak-street`): `ca`, `server` (for broker.example and
    /// 127.0.0.1), `porter-test-room-1` and `portal`; and, with its `issue`
    /// function, `porter-test-room-2`.
    pub fn documented() -> Pki {
        let pki = Pki { dir: open_dir() };
        let snippet = doc_block("openssl req -x509 -newkey ec").replace("oak-street", "test");
        let script = format!(
            "set -e\n{snippet}\nissue porter-test-room-2 porter-test-room-2 'extendedKeyUsage=clientAuth\\n'\n"
        );
        let out = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(pki.dir.path())
            .output()
            .expect("running bash and openssl (apt-get install openssl)");
        assert!(
            out.status.success(),
            "docs/mqtt.md's openssl snippet failed:\n{script}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for e in std::fs::read_dir(pki.dir.path()).unwrap() {
            std::fs::set_permissions(e.unwrap().path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("running openssl (apt-get install openssl)");
        assert!(out.status.success(), "openssl {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }

    /// A self-signed CA: `NAME.crt` and `NAME.key`.
    pub fn ca(&self, name: &str, cn: &str) {
        let (key, crt, subj) = (format!("{name}.key"), format!("{name}.crt"), format!("/CN={cn}"));
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &crt,
            "-days",
            "2",
            "-subj",
            &subj,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        self.readable(&[&key, &crt]);
    }

    /// `NAME.crt` for subject CN `cn`, signed by CA `ca`, with the given
    /// extensions. `rsa`: a 2048-bit RSA key in the traditional PKCS#1 form
    /// (`BEGIN RSA PRIVATE KEY`), as older installer tooling makes them;
    /// otherwise a P-256 key in PKCS#8.
    pub fn issue(&self, ca: &str, name: &str, cn: &str, ext: &str, rsa: bool) {
        let (key, csr, crt, extf) =
            (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"), format!("{name}.ext"));
        if rsa {
            self.openssl(&["genrsa", "-traditional", "-out", &key, "2048"]);
        } else {
            self.openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &key]);
        }
        self.openssl(&["req", "-new", "-key", &key, "-out", &csr, "-subj", &format!("/CN={cn}")]);
        std::fs::write(
            self.path(&extf),
            format!("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n{ext}"),
        )
        .unwrap();
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            &extf,
        ]);
        self.readable(&[&key, &crt]);
    }

    /// A client certificate for TLS client authentication.
    pub fn client(&self, ca: &str, name: &str, cn: &str, rsa: bool) {
        self.issue(ca, name, cn, "extendedKeyUsage=clientAuth\n", rsa);
    }

    fn readable(&self, files: &[&str]) {
        for f in files {
            std::fs::set_permissions(self.path(f), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }

    /// The broker's TLS listener lines: our CA, our server certificate.
    pub fn listener_tls(&self) -> String {
        format!(
            "cafile {}\ncertfile {}\nkeyfile {}\n",
            self.path("ca.crt").display(),
            self.path("server.crt").display(),
            self.path("server.key").display()
        )
    }

    /// mosquitto_pub/sub options trusting our CA, with a client certificate.
    pub fn client_args(&self, cert: Option<&str>) -> Vec<String> {
        let mut a = vec!["--cafile".to_string(), self.path("ca.crt").display().to_string()];
        if let Some(c) = cert {
            a.extend(["--cert".to_string(), self.path(&format!("{c}.crt")).display().to_string()]);
            a.extend(["--key".to_string(), self.path(&format!("{c}.key")).display().to_string()]);
        }
        a
    }

    /// porterctl's flags trusting our CA, with the client certificate `cert`.
    pub fn porterctl_args(&self, cert: &str) -> Vec<String> {
        let p = |f: String| self.path(&f).display().to_string();
        ["--ca-file".into(), p("ca.crt".into()), "--cert-file".into(), p(format!("{cert}.crt"))]
            .into_iter()
            .chain(["--key-file".into(), p(format!("{cert}.key"))])
            .collect()
    }

    /// porterd's `[mqtt]` lines (after `url`) for mutual TLS with the
    /// client certificate `cert`.
    pub fn porterd_lines(&self, cert: &str) -> String {
        let q = |f: String| format!("\"{}\"", self.path(&f).display());
        format!(
            "ca_file = {}\ncert_file = {}\nkey_file = {}\n",
            q("ca.crt".into()),
            q(format!("{cert}.crt")),
            q(format!("{cert}.key"))
        )
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

/// The code block of docs/mqtt.md that contains `marker`, as text.
fn doc_block(marker: &str) -> String {
    let docs = std::fs::read_to_string(workspace_root().join("docs/mqtt.md")).expect("docs/mqtt.md");
    let at = docs.find(marker).unwrap_or_else(|| panic!("docs/mqtt.md no longer has `{marker}`"));
    let start = docs[..at].rfind("```").map(|i| i + docs[i..].find('\n').unwrap() + 1).unwrap();
    let end = at + docs[at..].find("```").unwrap();
    docs[start..end].to_string()
}

/// `text` with `from` replaced by `to`; `from` must be there (so a change
/// to the docs fails here, not silently).
fn must_replace(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "docs/mqtt.md's broker configuration no longer has `{from}`:\n{text}");
    text.replace(from, to)
}

/// The site broker docs/mqtt.md recommends, running: its configuration
/// ("A Mosquitto configuration": mutual TLS, `use_identity_as_username`,
/// no anonymous clients, persistence) and its ACL file ("ACLs": the portal,
/// and a `user` block for each of controllers `room-1` and `room-2`) as
/// the docs give them, with the paths made local, `listener 8883` on a free
/// loopback port and site `test` for `oak-street`. The PKI is
/// [`Pki::documented`]'s. Its client tools connect as the portal unless
/// given other credentials ([`Site::auth`]); it dereferences to its
/// [`Broker`].
pub struct Site {
    pub pki: Pki,
    pub broker: Broker,
}

impl Site {
    pub fn start() -> Site {
        let pki = Pki::documented();
        let dir = open_dir();
        let acl = must_replace(&doc_block("# /etc/mosquitto/porter.acl"), "oak-street", "test");
        let acl_file = dir.path().join("porter.acl");
        std::fs::write(&acl_file, &acl).unwrap();
        std::fs::set_permissions(&acl_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut conf = doc_block("# /etc/mosquitto/conf.d/porter.conf");
        for (from, to) in [
            ("/etc/mosquitto/porter.acl", acl_file.display().to_string()),
            ("/var/lib/mosquitto/", format!("{}/", dir.path().display())),
            ("/etc/mosquitto/porter/ca.crt", pki.path("ca.crt").display().to_string()),
            ("/etc/mosquitto/porter/server.crt", pki.path("server.crt").display().to_string()),
            ("/etc/mosquitto/porter/server.key", pki.path("server.key").display().to_string()),
        ] {
            conf = must_replace(&conf, from, &to);
        }
        let conf = must_replace(&conf, "\nlistener 8883\n", "\nlistener PORT 127.0.0.1\n");
        let identity = pki.client_args(Some("portal"));
        let broker =
            Broker::start_conf(dir, |port| conf.replace("listener PORT", &format!("listener {port}")), true, identity);
        Site { pki, broker }
    }

    /// The client tools' credentials for the certificate `name` (`portal`,
    /// `porter-test-room-1`, `porter-test-room-2`).
    pub fn auth(&self, name: &str) -> Vec<String> {
        self.pki.client_args(Some(name))
    }

    /// porterd's `[mqtt]` lines (after `url`) for controller `controller`
    /// of site `test`: mutual TLS with its own certificate.
    pub fn porterd_lines(&self, controller: &str) -> String {
        self.pki.porterd_lines(&format!("porter-test-{controller}"))
    }
}

impl std::ops::Deref for Site {
    type Target = Broker;
    fn deref(&self) -> &Broker {
        &self.broker
    }
}
