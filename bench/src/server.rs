//! Server processes under test: our origin and nginx-rtmp, each optionally pinned to a
//! core with `taskset`, killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub struct ServerProc {
    pub name: String,
    pub rtmp_port: u16,
    pub api_port: Option<u16>,
    pub flv_port: Option<u16>,
    child: Child,
    pub dir: PathBuf,
}

impl ServerProc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn rtmp_url(&self, path: &str) -> String {
        format!("rtmp://127.0.0.1:{}/{path}", self.rtmp_port)
    }

    /// `http://127.0.0.1:<flv>/<path>.flv`, if the server serves HTTP-FLV.
    pub fn flv_url(&self, path: &str) -> Option<String> {
        self.flv_port
            .map(|p| format!("http://127.0.0.1:{p}/{path}.flv"))
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The tail of its log (for error messages).
    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    fn wait_port(&mut self, port: u16) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
            }
            if !self.alive() {
                bail!("{} exited at startup:\n{}", self.name, self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "{} did not listen on {port}:\n{}",
            self.name,
            self.log_tail()
        )
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_dir(tag: &str) -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!(
        "origin-bench-{tag}-{}-{}",
        std::process::id(),
        crate::free_port()
    ));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

fn pinned(cpu: Option<usize>, program: &Path) -> Command {
    match cpu {
        Some(c) => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", &c.to_string()]).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// Starts our origin (release binary) with one tokio worker thread, pinned to `cpu`.
pub fn start_origin(
    bin: &Path,
    cpu: Option<usize>,
    worker_threads: Option<usize>,
    extra: &[String],
) -> Result<ServerProc> {
    let ports = (crate::free_port(), crate::free_port(), crate::free_port());
    start_origin_on(bin, ports, cpu, worker_threads, extra)
}

/// Starts our origin on the given (rtmp, api, flv) ports.
pub fn start_origin_on(
    bin: &Path,
    (rtmp, api, flv): (u16, u16, u16),
    cpu: Option<usize>,
    worker_threads: Option<usize>,
    extra: &[String],
) -> Result<ServerProc> {
    let dir = temp_dir("origin")?;
    let log = std::fs::File::create(dir.join("server.log"))?;
    let mut cmd = pinned(cpu, bin);
    cmd.arg("serve")
        .args(["--rtmp-listen", &format!("127.0.0.1:{rtmp}")])
        .args(["--api-listen", &format!("127.0.0.1:{api}")])
        .args(["--flv-listen", &format!("127.0.0.1:{flv}")])
        .args(extra)
        .env(
            "RUST_LOG",
            std::env::var("ORIGIN_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if let Some(n) = worker_threads {
        cmd.env("TOKIO_WORKER_THREADS", n.to_string());
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))?;
    let mut p = ServerProc {
        name: "origin".into(),
        rtmp_port: rtmp,
        api_port: Some(api),
        flv_port: Some(flv),
        child,
        dir,
    };
    p.wait_port(rtmp)?;
    p.wait_port(api)?;
    p.wait_port(flv)?;
    Ok(p)
}

/// The nginx-rtmp dynamic module shipped by Debian's libnginx-mod-rtmp.
pub fn nginx_rtmp_module() -> Option<PathBuf> {
    [
        "/usr/lib/nginx/modules/ngx_rtmp_module.so",
        "/usr/share/nginx/modules/ngx_rtmp_module.so",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// Starts nginx with the rtmp module: one worker, no master, no daemon, as this user, with
/// its own config, pid and logs in a temp dir; pinned to `cpu`.
pub fn start_nginx(cpu: Option<usize>) -> Result<ServerProc> {
    let module = nginx_rtmp_module()
        .context("ngx_rtmp_module.so not found: apt-get install -y nginx libnginx-mod-rtmp")?;
    let nginx = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .context("nginx not found: apt-get install -y nginx")?;
    let dir = temp_dir("nginx")?;
    let port = crate::free_port();
    let conf = format!(
        r#"load_module {module};
worker_processes 1;
daemon off;
master_process off;
worker_rlimit_nofile 65536;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{
    worker_connections 20000;
    multi_accept on;
}}
rtmp {{
    server {{
        listen 127.0.0.1:{port};
        chunk_size 4096;
        application live {{
            live on;
        }}
    }}
}}
"#,
        module = module.display(),
        dir = dir.display(),
    );
    std::fs::write(dir.join("nginx.conf"), conf)?;
    let log = std::fs::File::create(dir.join("server.log"))?;
    let mut cmd = pinned(cpu, &nginx);
    cmd.arg("-p")
        .arg(&dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let child = cmd.spawn().context("spawning nginx")?;
    let mut p = ServerProc {
        name: "nginx-rtmp".into(),
        rtmp_port: port,
        api_port: None,
        flv_port: None,
        child,
        dir,
    };
    p.wait_port(port)?;
    Ok(p)
}
