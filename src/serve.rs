//! `scopewatch serve` (the dashboard) and `scopewatch user` (its users).
//! The web app itself is `scopewatch_dashboard`.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand, ValueEnum};
use scopewatch_dashboard::{
    AnalysisSettings, AppState, DashboardConfig, InitialAdmin, NewUser, Role, SecureCookies,
    UserStore,
};
use scopewatch_model::config::Config;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, IP:port
    #[arg(
        long,
        env = "SCOPEWATCH_LISTEN",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,
    /// `Secure` on the session cookie: auto = unless the address is loopback
    /// (put the dashboard behind TLS when it listens on a real interface)
    #[arg(long, value_enum, default_value = "auto")]
    pub secure_cookies: SecureCookiesArg,
    /// Minutes a session may sit unused before it ends
    #[arg(long, default_value_t = 30, value_name = "MINUTES")]
    pub idle_timeout_minutes: u64,
    /// Hours after login a session ends however busy
    #[arg(long, default_value_t = 12, value_name = "HOURS")]
    pub absolute_timeout_hours: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SecureCookiesArg {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a dashboard user; prints a one-time password to change at first login
    Add {
        /// Username: a-z 0-9 . _ - @
        #[arg(value_name = "NAME")]
        name: String,
        /// Role (repeatable): admin, security, compliance, product_owner, viewer
        #[arg(long = "role", required = true, value_name = "ROLE")]
        roles: Vec<String>,
        /// Limit the user to this tenant (repeatable); none = all tenants
        #[arg(long = "tenant", value_name = "TENANT")]
        tenants: Vec<String>,
        /// An app (client_id) the user owns, for product owners (repeatable)
        #[arg(long = "app", value_name = "CLIENT_ID")]
        apps: Vec<String>,
    },
    /// Give a user a new one-time password (and enable them again)
    Reset {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Disable a user: their sessions and API tokens stop working at once
    Disable {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// List users, one JSON object per line (no password hashes or tokens)
    List,
    /// Create an API token for a user (for `Authorization: Bearer` on
    /// /api/ and /metrics); prints it once, only its hash is kept
    Token {
        #[arg(value_name = "NAME")]
        name: String,
        /// What the token is for, shown in the admin page and `user list`
        #[arg(long, default_value = "api", value_name = "TEXT")]
        label: String,
    },
}

fn print_initial_admin(admin: &InitialAdmin) {
    // stdout, so it can be captured; stderr says what it is even when
    // stdout goes to a file.
    eprintln!(
        "scopewatch: first run: created the dashboard user {:?} with a one-time password \
         (shown only now; it must be changed at first login):",
        admin.username
    );
    println!("username: {}", admin.username);
    println!("password: {}", admin.password);
}

pub fn run_serve(config: &Config, args: ServeArgs) -> Result<ExitCode> {
    crate::ingest::init_logging();
    let dashboard = start(config, &args)?;
    dashboard
        .join()
        .map_err(|_| anyhow::anyhow!("the dashboard thread panicked"))??;
    Ok(ExitCode::SUCCESS)
}

/// Opens the dashboard's state (printing the first-run admin credential),
/// binds `args.listen` and serves on a thread until SIGINT or SIGTERM.
pub fn start(config: &Config, args: &ServeArgs) -> Result<std::thread::JoinHandle<Result<()>>> {
    let mut dash = DashboardConfig::new(&config.data_dir);
    dash.secure_cookies = match args.secure_cookies {
        SecureCookiesArg::Auto => SecureCookies::Auto,
        SecureCookiesArg::Always => SecureCookies::Always,
        SecureCookiesArg::Never => SecureCookies::Never,
    }
    .resolve(args.listen);
    dash.idle_timeout =
        std::time::Duration::from_secs(args.idle_timeout_minutes.saturating_mul(60));
    dash.absolute_timeout =
        std::time::Duration::from_secs(args.absolute_timeout_hours.saturating_mul(3600));
    dash.analysis = AnalysisSettings::from_config(config);
    let (state, initial) = AppState::open(dash).context("opening the dashboard's state")?;
    if let Some(admin) = &initial {
        print_initial_admin(admin);
    }
    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let stop = crate::ingest::stop_flag()?;
    tracing::info!(%addr, data = %config.data_dir.display(), "dashboard on http://{addr}/ ; SIGINT or SIGTERM stops");
    eprintln!("scopewatch: dashboard on http://{addr}/");
    Ok(std::thread::Builder::new()
        .name("dashboard".into())
        .spawn(move || {
            scopewatch_dashboard::serve_blocking(listener, state, stop)
                .context("serving the dashboard")
        })
        .context("starting the dashboard thread")?)
}

pub fn run_user(config: &Config, command: UserCommand) -> Result<ExitCode> {
    let dir = config.data_dir.join("dashboard");
    let (store, initial) = UserStore::open(&dir).context("opening the dashboard's users")?;
    if let Some(admin) = &initial {
        print_initial_admin(admin);
    }
    let audit = scopewatch_dashboard::AuditLog::open(&dir)?;
    // Whoever runs the CLI has the data directory; the trail names their
    // login and `cli` as the address.
    let actor = format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "?".into())
    );
    let record = |action: &str, target: &str| {
        audit.record(&scopewatch_dashboard::AuditEntry::new(
            &actor,
            action,
            &format!("user/{target}"),
            scopewatch_dashboard::Outcome::Success,
            "cli",
        ))
    };
    if let Some(admin) = &initial {
        record("user_create_initial_admin", &admin.username)?;
    }
    match command {
        UserCommand::Add {
            name,
            roles,
            tenants,
            apps,
        } => {
            let roles = roles
                .iter()
                .map(|r| r.parse::<Role>())
                .collect::<Result<Vec<_>, _>>()?;
            let password = store.add(NewUser {
                username: name.clone(),
                roles,
                tenants,
                owned_apps: apps,
            })?;
            record("user_add", &name)?;
            eprintln!("scopewatch: added {name:?}; one-time password (shown only now, to change at first login):");
            println!("{password}");
        }
        UserCommand::Reset { name } => {
            let password = store.reset(&name)?;
            record("user_reset", &name)?;
            eprintln!("scopewatch: new one-time password for {name:?} (shown only now):");
            println!("{password}");
        }
        UserCommand::Disable { name } => {
            store.disable(&name)?;
            record("user_disable", &name)?;
            eprintln!("scopewatch: disabled {name:?}");
        }
        UserCommand::Token { name, label } => {
            let (id, token) = store.create_token(&name, &label)?;
            record("token_create", &name)?;
            eprintln!("scopewatch: API token {id} for {name:?} (shown only now):");
            println!("{token}");
        }
        UserCommand::List => {
            for u in store.list() {
                let line = serde_json::json!({
                    "username": u.username,
                    "roles": u.roles,
                    "tenants": u.tenants,
                    "owned_apps": u.owned_apps,
                    "disabled": u.disabled,
                    "must_change_password": u.must_change_password,
                    "api_tokens": u.api_tokens.iter().map(|t| serde_json::json!({"id": t.id, "label": t.label, "created": t.created})).collect::<Vec<_>>(),
                    "created": u.created,
                });
                println!("{line}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
