//! The `feathur` command: serve by default, plus operator commands that work on
//! the database directly (the server must be stopped for those that write).

use std::{
    io::{IsTerminal, Read},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use clap::{Args, Parser, Subcommand};

use crate::{
    accounts::{Accounts, NewAccount},
    config::Config,
    storage::{OpenMode, Storage},
};

#[derive(Parser)]
#[command(name = "feathur", version, about = "A Matrix homeserver")]
struct Cli {
    /// Configuration file (default: ./feathur.toml if present, else built-in defaults).
    #[arg(long, short, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the homeserver (the default).
    Serve,
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage local users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage registration tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Inspect the database.
    #[command(subcommand)]
    Db(DbCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print it with secrets masked.
    Check,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user; without --password-stdin a random password is printed.
    Create {
        name: String,
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Set a new password and log out every device.
    ResetPassword {
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Deactivate a user: devices logged out, profile cleared, id never reused.
    Deactivate { name: String },
}

#[derive(Args)]
struct PasswordArgs {
    /// Read the password from standard input (first line).
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a registration token and print it.
    Create {
        /// How many registrations it allows (default: unlimited).
        #[arg(long)]
        uses: Option<u64>,
        /// How long it stays valid, e.g. `7d`, `12h`, `30m` (default: forever).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<Duration>,
        /// Use this token instead of a random one.
        #[arg(long)]
        token: Option<String>,
    },
}

#[derive(Subcommand)]
enum DbCommand {
    /// Open the database read-only; check its schema version and tables.
    Check,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("feathur: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => crate::server::run(config),
        Command::Config(ConfigCommand::Check) => {
            print!("{}", config.to_masked_toml());
            eprintln!("configuration OK");
            Ok(())
        }
        Command::Db(DbCommand::Check) => db_check(&config),
        Command::User(command) => with_accounts(&config, |accounts| user(accounts, command)),
        Command::Token(command) => with_accounts(&config, |accounts| token(accounts, command)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("feathur: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn db_check(config: &Config) -> anyhow::Result<()> {
    let storage = Storage::open(&config.database_dir(), OpenMode::ReadOnly)?;
    let report = storage.check()?;
    println!("{report}");
    anyhow::ensure!(
        report.is_ok(),
        "the database at {} has problems",
        storage.path().display()
    );
    Ok(())
}

/// Opens the database for writing and runs `f` on a small runtime. Fails at once
/// (database locked) while a server is running on the same data directory.
fn with_accounts<F, Fut>(config: &Config, f: F) -> anyhow::Result<()>
where
    F: FnOnce(std::sync::Arc<Accounts>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    std::fs::create_dir_all(&config.data_dir)?;
    let storage = Storage::open(&config.database_dir(), OpenMode::ReadWrite)?;
    let accounts = std::sync::Arc::new(Accounts::new(storage, config));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(f(accounts))
}

fn read_password(args: &PasswordArgs) -> anyhow::Result<(String, bool)> {
    if !args.password_stdin {
        return Ok((crate::accounts::random_password(), true));
    }
    if std::io::stdin().is_terminal() {
        eprint!("password: ");
    }
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let password = input.lines().next().unwrap_or_default().to_owned();
    anyhow::ensure!(
        !password.is_empty(),
        "the password read from standard input is empty"
    );
    Ok((password, false))
}

async fn user(accounts: std::sync::Arc<Accounts>, command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Create {
            name,
            admin,
            password,
        } => {
            let user_id = accounts.check_username(&name)?;
            let (password, generated) = read_password(&password)?;
            let new = NewAccount {
                user_id,
                password: Some(password.clone()),
                admin,
            };
            let user_id = accounts.create_account(new, None).await?;
            println!("created {user_id}");
            if generated {
                println!("password: {password}");
            }
        }
        UserCommand::ResetPassword { name, password } => {
            let user_id = accounts.local_user_id(&name)?;
            anyhow::ensure!(accounts.exists(&user_id)?, "no such user: {user_id}");
            let (password, generated) = read_password(&password)?;
            accounts
                .set_password(&user_id, &password, true, None)
                .await?;
            println!("password of {user_id} changed; all its devices are logged out");
            if generated {
                println!("password: {password}");
            }
        }
        UserCommand::Deactivate { name } => {
            let user_id = accounts.local_user_id(&name)?;
            anyhow::ensure!(accounts.exists(&user_id)?, "no such user: {user_id}");
            accounts.deactivate(&user_id).await?;
            println!("deactivated {user_id}");
        }
    }
    Ok(())
}

async fn token(accounts: std::sync::Arc<Accounts>, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            uses,
            expires,
            token,
        } => {
            let expiry = expires.map(|d| crate::accounts::now_ms() + d.as_millis() as u64);
            let token = accounts
                .create_registration_token(token, uses, expiry)
                .await?;
            println!("{token}");
        }
    }
    Ok(())
}
