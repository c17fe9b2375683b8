//! `crdgen` prints the OriginCluster CRD as YAML; `crdgen rbac` prints the operator's RBAC
//! rules as JSON (the single source the Helm chart's ClusterRole is compared against).

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    let arg = std::env::args().nth(1);
    let out = match arg.as_deref() {
        None | Some("crd") => origin_operator::crd::crd_yaml().map_err(|e| e.to_string()),
        Some("rbac") => Ok(origin_operator::rbac::rules_json()),
        Some(other) => Err(format!(
            "unknown argument `{other}`; usage: crdgen [crd|rbac]"
        )),
    };
    match out {
        Ok(text) => {
            print!("{text}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("crdgen: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
