//! Command-line shape of `lambdaless device ...`; the work is in
//! [`lambdaless_client::device`]. Every request waits for its answer and prints
//! it; a timeout or an answer with an `error` field exits non-zero.

use std::time::Duration;

use anyhow::bail;
use clap::{Args, Subcommand};
use lambdaless_client::device::{self, MqttArgs, Session};
use lambdaless_contracts::Names;
use serde_json::{json, Value};

#[derive(Args)]
pub(crate) struct DeviceArgs {
    #[command(flatten)]
    mqtt: MqttArgs,
    /// Seconds to wait for an answer or notification.
    #[arg(long, default_value_t = 10, global = true)]
    timeout: u64,
    #[command(subcommand)]
    command: DeviceCommand,
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// With RECIPIENT and PAYLOAD: the API's `send` (to device-outbound).
    /// Without: put a message from THING on device-inbound and wait until stored.
    Send {
        thing: String,
        recipient: Option<String>,
        /// JSON payload for the API's `send`.
        payload: Option<String>,
        /// Inbound message body (JSON); default: a seed-style sample for THING.
        #[arg(long)]
        body: Option<String>,
    },
    /// Newest and oldest stored message ids of THING.
    Query { thing: String },
    /// One stored message.
    Get { thing: String, message_id: String },
    /// The message id after MESSAGE_ID.
    Next { thing: String, message_id: String },
    /// Delete a stored message.
    Delete { thing: String, message_id: String },
    /// Print notifications of THING (or every device) as they come.
    Watch { thing: Option<String> },
}

pub(crate) async fn run(args: DeviceArgs, names: Names) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(args.timeout);
    let (op, thing, rest, payload) = match args.command {
        DeviceCommand::Watch { thing } => return device::watch(&args.mqtt, thing.as_deref()).await,
        DeviceCommand::Send {
            thing,
            recipient: None,
            payload: None,
            body,
        } => {
            let id =
                device::send_inbound(&args.mqtt, &names, &thing, body.as_deref(), timeout).await?;
            println!("{id}");
            return Ok(());
        }
        DeviceCommand::Send {
            thing,
            recipient: Some(recipient),
            payload: Some(payload),
            body: None,
        } => {
            let payload: Value =
                serde_json::from_str(&payload).unwrap_or_else(|_| Value::String(payload.clone()));
            ("send", thing, Some(recipient), json!({"payload": payload}))
        }
        DeviceCommand::Send { .. } => {
            bail!("use `device send THING [--body JSON]` or `device send THING RECIPIENT PAYLOAD`")
        }
        DeviceCommand::Query { thing } => ("query", thing, None, json!({})),
        DeviceCommand::Get { thing, message_id } => ("get", thing, Some(message_id), json!({})),
        DeviceCommand::Next { thing, message_id } => ("next", thing, Some(message_id), json!({})),
        DeviceCommand::Delete { thing, message_id } => {
            ("delete", thing, Some(message_id), json!({}))
        }
    };
    let mut session = Session::connect(&args.mqtt, &[]).await?;
    let answer = session
        .request(op, &thing, rest.as_deref(), payload, timeout)
        .await?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    if let Some(error) = answer.get("error") {
        bail!("{op} answered with an error: {error}");
    }
    Ok(())
}
