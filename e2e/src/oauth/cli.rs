//! Command-line interface of the `hawser-mock-oauth` binary.

use std::{net::SocketAddr, time::Duration};

use clap::Parser;

use super::{AuthMethod, ClientConfig, Config, JwtAlg, ResourceServer};

/// Strict, test-only OAuth 2 authorization server for Hawser's tests.
#[derive(Debug, Clone, Parser)]
#[command(name = "hawser-mock-oauth", version, about)]
pub struct Cli {
    /// Address to listen on. Port 0 picks a free port; the chosen address is
    /// printed as `listening http://<ip>:<port>`.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,

    /// Access token lifetime (`500ms`, `2s`, `5m`, `1h`, `1d`; a bare number is seconds).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub access_ttl: Duration,

    /// Refresh token lifetime, counted from each (rotated) refresh token's issue.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub refresh_ttl: Duration,

    /// Authorization code lifetime.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub code_ttl: Duration,

    /// Confidential client (repeatable). A trailing `:basic` or `:post`
    /// restricts it to `client_secret_basic` or `client_secret_post`.
    #[arg(long = "client", value_name = "ID:SECRET[:basic|:post]", value_parser = parse_client)]
    pub clients: Vec<ClientConfig>,

    /// Public client (token endpoint auth method `none`; repeatable).
    #[arg(long = "public-client", value_name = "ID")]
    pub public_clients: Vec<String>,

    /// Credentials a resource server uses to call `/introspect` (repeatable;
    /// every confidential client may introspect too).
    #[arg(long = "resource-server", value_name = "ID:SECRET", value_parser = parse_resource_server)]
    pub resource_servers: Vec<ResourceServer>,

    /// Issuer identifier (default `http://<ip>:<port>`).
    #[arg(long, value_name = "URL")]
    pub issuer: Option<String>,

    /// Every authorization and token request must carry this RFC 8707 `resource`.
    #[arg(long, value_name = "URL")]
    pub require_resource: Option<String>,

    /// Only accept these exact redirect URIs at `/authorize` (repeatable;
    /// default: any http(s) URL without a fragment).
    #[arg(long = "redirect-uri", value_name = "URL")]
    pub redirect_uris: Vec<String>,

    /// Scopes that may be requested (repeatable; default `mcp`). A request
    /// without `scope` is granted all of them.
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,

    /// `sub` of code-flow tokens when `/authorize` has no `login_hint`.
    #[arg(long, default_value = "mock-user")]
    pub subject: String,

    /// Issue JWT access tokens (`typ: at+jwt`) signed with the current key.
    #[arg(long)]
    pub jwt: bool,

    /// Algorithm of the signing keys: `ES256` or `EdDSA`.
    #[arg(long, value_name = "ALG", default_value = "ES256")]
    pub jwt_alg: JwtAlg,

    /// A group of a subject, carried as `groups` in its JWTs (repeatable).
    #[arg(long = "group", value_name = "SUBJECT:GROUP", value_parser = parse_group)]
    pub groups: Vec<(String, String)>,
}

impl Cli {
    /// The provider configuration these flags describe.
    pub fn into_config(self) -> Config {
        let defaults = Config::default();
        let mut clients = self.clients;
        clients.extend(self.public_clients.into_iter().map(ClientConfig::public));
        Config {
            listen: self.listen,
            access_ttl: self.access_ttl,
            refresh_ttl: self.refresh_ttl,
            code_ttl: self.code_ttl,
            clients,
            resource_servers: self.resource_servers,
            issuer: self.issuer,
            require_resource: self.require_resource,
            redirect_uris: self.redirect_uris,
            scopes: if self.scopes.is_empty() {
                defaults.scopes
            } else {
                self.scopes
            },
            default_subject: self.subject,
            jwt: self.jwt,
            jwt_alg: self.jwt_alg,
            groups: self.groups,
        }
    }
}

/// Parses `500ms`, `2s`, `5m`, `1h`, `1d` or a bare number of seconds.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let input = input.trim();
    let split = input
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(input.len());
    let (number, unit) = input.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {input:?} (e.g. 500ms, 2s, 5m, 1h)"))?;
    let millis = match unit {
        "ms" => Some(value),
        "" | "s" => value.checked_mul(1000),
        "m" => value.checked_mul(60_000),
        "h" => value.checked_mul(3_600_000),
        "d" => value.checked_mul(86_400_000),
        _ => return Err(format!("unknown duration unit {unit:?} (ms, s, m, h, d)")),
    };
    millis
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration {input:?} is too large"))
}

fn split_id_secret(input: &str) -> Result<(String, String), String> {
    let (id, secret) = input
        .split_once(':')
        .ok_or_else(|| "expected ID:SECRET".to_owned())?;
    if id.is_empty() || secret.is_empty() {
        return Err("expected ID:SECRET with a non-empty id and secret".to_owned());
    }
    Ok((id.to_owned(), secret.to_owned()))
}

/// Parses `ID:SECRET`, optionally followed by `:basic` or `:post`.
pub fn parse_client(input: &str) -> Result<ClientConfig, String> {
    let (rest, only) = if let Some(rest) = input.strip_suffix(":basic") {
        (rest, Some(AuthMethod::ClientSecretBasic))
    } else if let Some(rest) = input.strip_suffix(":post") {
        (rest, Some(AuthMethod::ClientSecretPost))
    } else {
        (input, None)
    };
    let (id, secret) = split_id_secret(rest)?;
    let client = ClientConfig::confidential(id, secret);
    Ok(match only {
        Some(method) => client.with_auth_methods(&[method]),
        None => client,
    })
}

fn parse_group(input: &str) -> Result<(String, String), String> {
    match input.split_once(':') {
        Some((subject, group)) if !subject.is_empty() && !group.is_empty() => {
            Ok((subject.to_owned(), group.to_owned()))
        }
        _ => Err("expected SUBJECT:GROUP".to_owned()),
    }
}

fn parse_resource_server(input: &str) -> Result<ResourceServer, String> {
    let (id, secret) = split_id_secret(input)?;
    Ok(ResourceServer { id, secret })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn clients() {
        let client = parse_client("app:s3cret").expect("valid");
        assert_eq!(client.id, "app");
        assert_eq!(client.secret.as_deref(), Some("s3cret"));
        assert_eq!(client.auth_methods.len(), 2);
        let client = parse_client("app:a:b:basic").expect("valid");
        assert_eq!(client.secret.as_deref(), Some("a:b"));
        assert_eq!(client.auth_methods, vec![AuthMethod::ClientSecretBasic]);
        let client = parse_client("app:qq-secret-qq:post").expect("valid");
        assert_eq!(client.auth_methods, vec![AuthMethod::ClientSecretPost]);
        assert!(parse_client("app").is_err());
        assert!(parse_client(":x").is_err());
        assert!(parse_client("app:").is_err());
        // Secrets never appear in Debug output.
        assert!(!format!("{client:?}").contains("qq-secret-qq"));
    }

    #[test]
    fn cli_builds_a_config() {
        let cli = Cli::try_parse_from([
            "hawser-mock-oauth",
            "--access-ttl",
            "1s",
            "--client",
            "gw:pw",
            "--public-client",
            "ide",
            "--require-resource",
            "http://127.0.0.1:9/mcp",
        ])
        .expect("parses");
        let config = cli.into_config();
        assert_eq!(config.access_ttl, Duration::from_secs(1));
        assert_eq!(config.refresh_ttl, Duration::from_secs(3600));
        assert_eq!(config.clients.len(), 2);
        assert!(!config.clients[1].is_confidential());
        assert_eq!(config.scopes, vec!["mcp".to_owned()]);
        assert!(!config.jwt);
        assert_eq!(config.jwt_alg, JwtAlg::Es256);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn oidc_flags() {
        let cli = Cli::try_parse_from([
            "hawser-mock-oauth",
            "--jwt",
            "--jwt-alg",
            "EdDSA",
            "--group",
            "alice:admins",
            "--group",
            "alice:devs",
        ])
        .expect("parses");
        let config = cli.into_config();
        assert!(config.jwt);
        assert_eq!(config.jwt_alg, JwtAlg::EdDsa);
        assert_eq!(
            config.groups,
            vec![
                ("alice".to_owned(), "admins".to_owned()),
                ("alice".to_owned(), "devs".to_owned())
            ]
        );
        assert!(Cli::try_parse_from(["hawser-mock-oauth", "--jwt-alg", "RS256"]).is_err());
        assert!(Cli::try_parse_from(["hawser-mock-oauth", "--group", "alice"]).is_err());
    }
}
