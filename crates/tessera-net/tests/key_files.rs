//! Private key files: loaded only when they are regular files readable by their owner alone.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tessera_net::NetError;
use tessera_net::certs::{KeyUse, dev_cluster};
use tessera_net::error::KeyFileProblem;
use tessera_net::tls::Identity;

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn folder() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tessera-key-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn loose_or_linked_key_files_are_refused_with_the_fix() {
    let dir = folder();
    let (ca, parties) = dev_cluster("keys", &[("user", KeyUse::Client)]).unwrap();
    let (ca_path, cert, key) = (dir.join("ca.pem"), dir.join("user.pem"), dir.join("user.key"));
    write(&ca_path, &ca, 0o644);
    write(&cert, &parties[0].cert, 0o644);
    let load = |key: &Path| Identity::from_files("user", &ca_path, &cert, key).map(|_| ());

    write(&key, &parties[0].key, 0o600);
    assert_eq!(load(&key), Ok(()));
    for mode in [0o644, 0o640, 0o604, 0o620] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        let refused = load(&key).unwrap_err();
        let path = key.display().to_string();
        assert_eq!(refused, NetError::KeyFile { path: path.clone(), problem: KeyFileProblem::Loose { mode } });
        assert_eq!(
            refused.to_string(),
            format!("key file {path}: has mode {mode:03o}, open to group or others; fix it with chmod 600")
        );
        assert_eq!(refused.fault(), tessera_net::Fault::Config);
    }
    // A link to a private key is refused even when its target is 0600.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = dir.join("linked.key");
    std::os::unix::fs::symlink(&key, &link).unwrap();
    let refused = load(&link).unwrap_err();
    assert_eq!(refused, NetError::KeyFile { path: link.display().to_string(), problem: KeyFileProblem::Symlink });
    assert!(refused.to_string().contains("chmod 600"));
    // A missing key is an unreadable certificate file, named.
    assert!(matches!(load(&dir.join("none.key")), Err(NetError::Certificate(m)) if m.contains("none.key")));
    let _ = std::fs::remove_dir_all(dir);
}
