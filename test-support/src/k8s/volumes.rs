//! The pod's volumes as the kubelet makes them: ConfigMap, Secret and projected volumes
//! become directories of files (one per key, or per `items` entry), rewritten when the
//! objects change; emptyDir is an empty directory. Each file is replaced atomically
//! (written beside, then renamed), so a reader never sees half a file.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, KeyToPath, Pod, Secret, Volume};
use kube::Api;

/// File name → (content, mode) of one volume.
pub type Files = BTreeMap<String, (Vec<u8>, u32)>;

/// Why a volume cannot be made yet (the kubelet retries these).
#[derive(Debug)]
pub struct NotReady(pub String);

async fn config_map(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, NotReady> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm = api
        .get_opt(name)
        .await
        .map_err(|e| NotReady(format!("configmap {name}: {e}")))?;
    Ok(cm.map(|cm| {
        let mut out: BTreeMap<String, Vec<u8>> = cm
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        out.extend(
            cm.binary_data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0)),
        );
        out
    }))
}

async fn secret(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, NotReady> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let s = api
        .get_opt(name)
        .await
        .map_err(|e| NotReady(format!("secret {name}: {e}")))?;
    Ok(s.map(|s| {
        let mut out: BTreeMap<String, Vec<u8>> = s
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        out.extend(
            s.string_data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes())),
        );
        out
    }))
}

/// Keys (or `items`) of one source into `files`.
fn project(
    files: &mut Files,
    data: Option<BTreeMap<String, Vec<u8>>>,
    items: &Option<Vec<KeyToPath>>,
    mode: u32,
    optional: bool,
    what: &str,
) -> Result<(), NotReady> {
    let Some(data) = data else {
        return if optional {
            Ok(())
        } else {
            Err(NotReady(format!("{what} not found")))
        };
    };
    match items {
        Some(items) => {
            for it in items {
                match data.get(&it.key) {
                    Some(v) => {
                        let m = it.mode.map(|m| m as u32).unwrap_or(mode);
                        files.insert(it.path.clone(), (v.clone(), m));
                    }
                    None if optional => {}
                    None => return Err(NotReady(format!("{what}: key {} not found", it.key))),
                }
            }
        }
        None => files.extend(data.into_iter().map(|(k, v)| (k, (v, mode)))),
    }
    Ok(())
}

/// The files of a ConfigMap, Secret or projected volume; `None` for other kinds.
pub async fn files(client: &kube::Client, ns: &str, v: &Volume) -> Result<Option<Files>, NotReady> {
    let mut files = Files::new();
    if let Some(c) = &v.config_map {
        let mode = c.default_mode.unwrap_or(0o644) as u32;
        let data = config_map(client, ns, &c.name).await?;
        project(
            &mut files,
            data,
            &c.items,
            mode,
            c.optional == Some(true),
            &c.name,
        )?;
    } else if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let mode = s.default_mode.unwrap_or(0o644) as u32;
        let data = secret(client, ns, &name).await?;
        project(
            &mut files,
            data,
            &s.items,
            mode,
            s.optional == Some(true),
            &name,
        )?;
    } else if let Some(p) = &v.projected {
        let mode = p.default_mode.unwrap_or(0o644) as u32;
        for src in p.sources.iter().flatten() {
            if let Some(c) = &src.config_map {
                let data = config_map(client, ns, &c.name).await?;
                project(
                    &mut files,
                    data,
                    &c.items,
                    mode,
                    c.optional == Some(true),
                    &c.name,
                )?;
            }
            if let Some(s) = &src.secret {
                let data = secret(client, ns, &s.name).await?;
                project(
                    &mut files,
                    data,
                    &s.items,
                    mode,
                    s.optional == Some(true),
                    &s.name,
                )?;
            }
        }
    } else {
        return Ok(None);
    }
    Ok(Some(files))
}

/// Writes `files` into `dir`: changed files replaced atomically, stale ones removed.
/// Returns whether anything changed.
pub fn sync_dir(dir: &Path, files: &Files) -> std::io::Result<bool> {
    std::fs::create_dir_all(dir)?;
    let mut changed = false;
    for (name, (content, mode)) in files {
        let path = dir.join(name);
        if std::fs::read(&path).ok().as_deref() == Some(content.as_slice()) {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = dir.join(format!(".{}.tmp", name.replace('/', "_")));
        std::fs::write(&tmp, content)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(*mode))?;
        std::fs::rename(&tmp, &path)?;
        changed = true;
    }
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && entry.path().is_file() && !files.contains_key(&name) {
            std::fs::remove_file(entry.path())?;
            changed = true;
        }
    }
    Ok(changed)
}

/// Host directory of every volume of the pod under `root`, made (emptyDir) or synced
/// (ConfigMap/Secret/projected) now. Errors name what is missing.
pub async fn materialise(
    client: &kube::Client,
    pod: &Pod,
    root: &Path,
) -> Result<BTreeMap<String, PathBuf>, NotReady> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut dirs = BTreeMap::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let dir = root.join(&v.name);
        match files(client, &ns, v).await? {
            Some(f) => {
                sync_dir(&dir, &f)
                    .map_err(|e| NotReady(format!("write volume {}: {e}", v.name)))?;
            }
            None => std::fs::create_dir_all(&dir)
                .map_err(|e| NotReady(format!("mkdir {}: {e}", dir.display())))?,
        }
        dirs.insert(v.name.clone(), dir);
    }
    Ok(dirs)
}
