//! The `presenced` command.

use std::process::ExitCode;

use clap::Parser;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use presenced::cli::{CheckArgs, Cli, Command, LogFormat, MigrateArgs, ServeArgs, TokenArgs};
use tokio_util::sync::CancellationToken;

/// mimalloc instead of the system allocator: a request makes a few dozen
/// small allocations, and glibc's malloc (its arena locks, `malloc_consolidate`)
/// was about a sixth of the CPU a GET presence costs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Token(args) => token(args),
        Command::Check(args) => check(args),
        Command::Migrate(args) => migrate(args),
    }
}

/// Runs one offline command's future on a small runtime.
fn offline(
    name: &str,
    work: impl std::future::Future<Output = Result<String, String>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("presenced {name}: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("presenced {name}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `presenced migrate`: copies an embedded store into Redis.
fn migrate(args: MigrateArgs) -> ExitCode {
    let options = presenced::server::redis_options(&args.target());
    offline(
        "migrate",
        presenced::admin::migrate(&args.from_data_dir, options),
    )
}

/// `presenced check`: verifies a data directory offline, or reports what a
/// Redis keyspace holds.
fn check(args: CheckArgs) -> ExitCode {
    if let Some(settings) = args.redis() {
        if settings.redis_urls.is_empty() {
            eprintln!("presenced check: --store redis needs --redis-url redis://HOST:PORT");
            return ExitCode::FAILURE;
        }
        let options = presenced::server::redis_options(&settings);
        return offline("check", async move {
            presenced::admin::check_redis(options)
                .await
                .map(|summary| format!("presenced check: {summary}"))
        });
    }
    let dir = args.data_dir();
    match presence_store::embedded::check(&dir) {
        Ok(summary) => {
            println!(
                "presenced check: {} is healthy: store format {}, {} users holding facts \
                 ({} sessions), {} records in all, {} bytes on disk",
                dir.display(),
                summary.format,
                summary.users,
                summary.sessions,
                summary.records,
                summary.bytes_on_disk
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("presenced check: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `presenced token`: prints a signed development token.
fn token(args: TokenArgs) -> ExitCode {
    let minted = args
        .into_request()
        .and_then(|request| presenced::token::mint(&request, jiff::Timestamp::now().as_second()));
    match minted {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("presenced: {message}");
            ExitCode::from(2)
        }
    }
}

fn install_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn install_metrics() -> Option<PrometheusHandle> {
    let buckets = [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    ];
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
        .ok()?
        .install_recorder();
    match recorder {
        Ok(handle) => Some(handle),
        Err(error) => {
            tracing::warn!(%error, "metrics are off: the recorder could not be installed");
            None
        }
    }
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C; returns without a word if it
/// is cancelled otherwise (a task of the server failed).
async fn watch_signals(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut terminate) = signal(SignalKind::terminate()) else {
            tracing::warn!("cannot watch SIGTERM");
            return;
        };
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: shutting down"),
            () = shutdown.cancelled() => return,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    shutdown.cancel();
}

fn serve(args: ServeArgs) -> ExitCode {
    let (config, log_format) = match args.resolve() {
        Ok(resolved) => (resolved.server, resolved.log_format),
        Err(message) => {
            eprintln!("presenced: {message}");
            return ExitCode::from(2);
        }
    };
    install_tracing(log_format);
    presenced::connections::raise_open_file_limit(config.limits.max_connections);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("presenced: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let metrics = install_metrics();
        if let Err(error) = presenced::server::check_config(&config) {
            return Err(error.to_string());
        }
        // Bound at once, so that a taken port fails the start before the
        // store is read; the port opens (and the line is printed) only once
        // requests are served.
        let socket = presenced::server::bind(config.listen)
            .map_err(|error| format!("cannot listen on {}: {error}", config.listen))?;
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let serving = move |address| {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            // Whoever started presenced reads this line to know where it is.
            let _ = writeln!(out, "presenced listening on {scheme}://{address}");
            let _ = out.flush();
        };
        let shutdown = CancellationToken::new();
        // The one task outside `server::run`'s tracker, on purpose: it is
        // how `main` produces `run`'s `shutdown` input, so it must listen
        // before `run` builds its tracker (a SIGTERM while the store loads
        // stops the start), and it belongs to the binary, not to the server
        // that tests and embedders run with a token of their own. It holds
        // nothing to drain; it ends with the signal or the token, or is
        // dropped with the runtime when `serve` returns.
        tokio::spawn(watch_signals(shutdown.clone()));
        presenced::server::run(socket, config, shutdown, metrics, Box::new(serving))
            .await
            .map_err(|error| error.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("presenced: {message}");
            ExitCode::FAILURE
        }
    }
}
