//! `riposte settings-key new FILE`: makes the key file that seals secret setting values in the registry
//! ([`riposte::secrets::seal`]).

use anyhow::Result;
use riposte::secrets::seal::SettingsKeys;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write a new random settings key to FILE (mode 0600; an existing file is never overwritten). Give the same
    /// file to every deployer and runner of a NATS: --settings-key-file FILE or RIPOSTE_SETTINGS_KEY_FILE.
    New {
        /// The key file to create.
        file: PathBuf,
    },
}

pub fn run(cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::New { file } => {
            let keys = SettingsKeys::generate(&file)?;
            println!(
                "settings key {} written to {}: give this file to every deployer and runner of the NATS \
                 (--settings-key-file {} or RIPOSTE_SETTINGS_KEY_FILE), and keep it secret",
                keys.sealing_key_id(),
                file.display(),
                file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
