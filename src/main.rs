//! The `merklekv` server binary: parse the command line, start a node,
//! stop it on SIGINT, SIGTERM or SHUTDOWN (exit 0); SIGHUP reloads the TLS
//! certificates.

use std::process::ExitCode;

use merklekv::cli::{self, CliOutcome};
use merklekv::node::Node;

fn main() -> ExitCode {
    let loaded = match cli::parse(std::env::args_os(), &|k| std::env::var(k).ok()) {
        Ok(CliOutcome::Run(loaded)) => loaded,
        Ok(CliOutcome::Check(loaded)) => return check(&loaded),
        Ok(CliOutcome::Help(text) | CliOutcome::Version(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::FAILURE;
        }
    };
    merklekv::logging::init(&loaded.config.logging);
    merklekv::failfast::install();
    for w in &loaded.warnings {
        log::warn!("{w}");
    }
    if let Some(src) = &loaded.source {
        log::info!("configuration: {}", src.display());
    }

    // SIGINT/SIGTERM handlers go in before the node starts: its workers
    // serve as soon as the port is bound, and a signal from then on must
    // mean a graceful stop, not the default action (death by signal, with
    // persistence unflushed). A signal during startup is handled once the
    // node is up.
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ]);
    if let Err(e) = &signals {
        log::warn!("cannot install signal handlers: {e}");
    }

    let node = match Node::start(loaded.config) {
        Ok(node) => node,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::FAILURE;
        }
    };

    // A first signal requests a graceful stop; a second one exits at once.
    // SIGHUP rereads the TLS certificate, key and CA files.
    if let Ok(mut signals) = signals {
        let shared = node.shared().clone();
        let spawned = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut seen = false;
                for sig in signals.forever() {
                    if sig == signal_hook::consts::SIGHUP {
                        match &shared.tls {
                            Some(tls) => match tls.reload() {
                                Ok(()) => log::info!("SIGHUP: TLS certificates reloaded"),
                                Err(e) => log::error!("SIGHUP: {e}; keeping the previous ones"),
                            },
                            None => log::info!("SIGHUP: no TLS configured, nothing to reload"),
                        }
                        continue;
                    }
                    if seen {
                        std::process::exit(128 + sig);
                    }
                    seen = true;
                    log::info!("signal {sig}: shutting down");
                    shared.shutdown.trigger();
                }
            });
        if let Err(e) = spawned {
            log::warn!("cannot start the signal thread: {e}");
        }
    }

    // One line on stdout says where the node listens (tests and scripts
    // started with `--port 0` read the port from it).
    {
        use std::io::Write as _;
        let cfg = &node.shared().config;
        let engine = match cfg.engine {
            merklekv::config::Engine::Memory => "in-memory".to_string(),
            merklekv::config::Engine::Persistent => {
                format!("persistent at {}", cfg.storage_path.display())
            }
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "merklekv {} listening on {} (node {}, {} workers, {engine})",
            env!("CARGO_PKG_VERSION"),
            node.addr(),
            cfg.node_id,
            cfg.threads
        );
        let _ = out.flush();
    }

    node.wait();
    ExitCode::SUCCESS
}

/// `--check-config`: warnings and errors on stderr, the resolved settings
/// on stdout; exit 0 when the node would start.
fn check(loaded: &merklekv::config::Loaded) -> ExitCode {
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    if let Err(e) = Node::check(&loaded.config) {
        eprintln!("Error: {e}");
        return ExitCode::FAILURE;
    }
    let source = loaded
        .source
        .as_ref()
        .map_or("built-in defaults".to_string(), |p| p.display().to_string());
    println!("{}: configuration OK ({source})", cli::version());
    print!("{}", merklekv::config::settings::listing(&loaded.config));
    ExitCode::SUCCESS
}
