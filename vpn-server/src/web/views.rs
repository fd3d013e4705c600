//! Page bodies of the group pages.

use maud::{html, Markup};

use crate::db::audit::Entry;
use crate::db::groups::{Group, Listed};
use crate::db::members::{JoinRequest, Member};
use crate::db::{self};

/// `2026-11-25 10:46 UTC`.
fn when(secs: i64) -> String {
    human(&vpn_pki::fmt_time(db::from_secs(secs)))
}

fn human(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(11..16)) {
        (Some(d), Some(t)) => format!("{d} {t} UTC"),
        _ => rfc3339.to_owned(),
    }
}

/// `/groups`: all groups and the create form.
pub fn groups_list(groups: &[Listed], csrf: &str) -> Markup {
    html! {
        @if groups.is_empty() {
            p.muted { "No groups yet." }
        } @else {
            div.table { table #groups {
                thead { tr { th { "Group" } th { "Range" } th { "You" } } }
                tbody {
                    @for g in groups {
                        tr {
                            td data-label="Group" { a href=(format!("/groups/{}", g.name)) { (g.name) } }
                            td.mono data-label="Range" { @if g.role.is_some() { (g.range4) } @else { "—" } }
                            td data-label="You" {
                                @match (g.role.as_deref(), g.request.as_deref()) {
                                    (Some("admin"), _) => "administrator",
                                    (Some(_), _) => { "member · " a href=(format!("/groups/{}/blob", g.name)) { "blob" } },
                                    (None, Some("pending")) => "request pending",
                                    (None, Some("denied")) => { "request denied · " a href=(format!("/groups/{}/join", g.name)) { "ask again" } },
                                    _ => { a href=(format!("/groups/{}/join", g.name)) { "Ask to join" } },
                                }
                            }
                        }
                    }
                }
            } }
        }
        h2 { "Create a group" }
        p.muted { "You become its administrator; the server makes a certificate authority for it." }
        form #create-group-form .stack method="post" action="/groups" {
            input type="hidden" name="csrf" value=(csrf);
            label { "Name" small { "letters, digits, . _ -" }
                input type="text" name="name" required maxlength="64"; }
            label { "Address range (IPv4)" small { "e.g. 10.77.0.0/24" }
                input type="text" name="range" required value="10.77.0.0/24"; }
            label { "Certificate validity (days)"
                input type="number" name="validity_days" min="1" max="3650" value="90" required; }
            button type="submit" { "Create group" }
        }
    }
}

/// Everything the group page shows.
pub struct GroupView<'a> {
    /// The group.
    pub g: &'a Group,
    /// The viewer's role.
    pub role: &'a str,
    /// Members.
    pub members: &'a [Member],
    /// Latest certificate expiry per member id.
    pub expiries: &'a std::collections::HashMap<i64, i64>,
    /// Pending requests (admins only).
    pub pending: &'a [JoinRequest],
    /// The session's CSRF token.
    pub csrf: &'a str,
    /// Whether the viewer has a (not revoked) node in the group.
    pub has_node: bool,
}

/// `/groups/{name}`.
pub fn group_page(v: &GroupView<'_>) -> Markup {
    let g = v.g;
    let admin = v.role == "admin";
    html! {
        p {
            "Range " span.mono { (g.range4) } " · certificates valid " (g.validity_days) " days · you are "
            strong { (if admin { "administrator" } else { "member" }) }
        }
        p {
            @if v.has_node {
                a href=(format!("/groups/{}/blob", g.name)) { "Your configuration blob" }
            } @else {
                a #join-link href=(format!("/groups/{}/join", g.name)) { "Add a node of yours" }
            }
            @if admin { " · " a href=(format!("/groups/{}/audit", g.name)) { "Audit log" } }
        }
        @if admin {
            h2 { "Pending requests" }
            @if v.pending.is_empty() {
                p.muted #no-requests { "None." }
            } @else {
                div.table { table #requests {
                    thead { tr { th { "Account" } th { "Node name" } th { "Reason" } th { "Asked" } th {} } }
                    tbody {
                        @for r in v.pending {
                            tr #(format!("request-{}", r.id)) {
                                td data-label="Account" { (r.username) }
                                td.mono data-label="Node name" { (r.node_name) }
                                td data-label="Reason" { (r.reason) }
                                td data-label="Asked" { (when(r.created_at)) }
                                td.actions {
                                    form.inline #(format!("approve-{}", r.id)) method="post"
                                        action=(format!("/groups/{}/requests/{}/approve", g.name, r.id)) {
                                        input type="hidden" name="csrf" value=(v.csrf);
                                        button type="submit" { "Approve" }
                                    }
                                    form.inline #(format!("deny-{}", r.id)) method="post"
                                        action=(format!("/groups/{}/requests/{}/deny", g.name, r.id)) {
                                        input type="hidden" name="csrf" value=(v.csrf);
                                        button.plain type="submit" { "Deny" }
                                    }
                                }
                            }
                        }
                    }
                } }
            }
        }
        h2 { "Members" }
        @if v.members.is_empty() {
            p.muted { "No members yet." }
        } @else {
            div.table { table #members {
                thead { tr {
                    th { "Node" } th { "Account" } th { "Status" } th { "Address" }
                    @if admin { th { "PeerId" } th { "Certificate until" } th {} }
                } }
                tbody {
                    @for m in v.members {
                        tr #(format!("member-{}", m.node_name)) {
                            td.mono data-label="Node" { (m.node_name) }
                            td data-label="Account" { (m.username.as_deref().unwrap_or("—")) }
                            td class=(format!("status-{}", m.status)) data-label="Status" { (m.status) }
                            td.mono data-label="Address" { (m.address.as_deref().unwrap_or("—")) }
                            @if admin {
                                td.mono data-label="PeerId" { (m.peer_id.as_deref().unwrap_or("—")) }
                                td data-label="Certificate until" { (v.expiries.get(&m.id).map_or("—".to_owned(), |t| when(*t))) }
                                td.actions {
                                    @if m.status != "revoked" {
                                        form.inline #(format!("revoke-{}", m.node_name)) method="post"
                                            action=(format!("/groups/{}/members/{}/revoke", g.name, m.node_name)) {
                                            input type="hidden" name="csrf" value=(v.csrf);
                                            button.danger type="submit" { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            } }
        }
        @if admin {
            h2 { "Settings" }
            form #settings-form .stack method="post" action=(format!("/groups/{}/settings", g.name)) {
                input type="hidden" name="csrf" value=(v.csrf);
                label { "Bootstrap addresses" small { "one multiaddr per line, e.g. /ip4/192.0.2.1/tcp/4001/p2p/12D3KooW…" }
                    textarea name="bootstrap" { (g.bootstrap) } }
                button type="submit" { "Save" }
            }
            h2 { "Certificate authority" }
            p { "CRL number " (g.crl_number) ", next update " (when(g.crl_next_update)) ". "
                "Nodes fetch " span.mono { (format!("/api/v1/groups/{}/crl", g.name)) } "." }
        }
    }
}

/// `/groups/{name}/join`.
pub fn join_page(group: &str, csrf: &str, node_name: &str, reason: &str) -> Markup {
    html! {
        p { "The administrators of " strong { (group) } " will see your request." }
        form #join-form .stack method="post" action=(format!("/groups/{group}/join")) {
            input type="hidden" name="csrf" value=(csrf);
            label { "Node name" small { "the name of your machine in the group: letters, digits, . _ - @" }
                input type="text" name="node_name" value=(node_name) required maxlength="64"; }
            label { "Reason" small { "why you want to join (up to 1000 characters)" }
                textarea name="reason" required maxlength="1000" { (reason) } }
            button type="submit" { "Send request" }
        }
    }
}

/// `/groups/{name}/blob` with a fresh blob.
pub fn blob_page(group: &str, node: &str, blob: &str) -> Markup {
    let href = format!("data:text/plain;charset=utf-8,{blob}");
    html! {
        p { "This blob enrols your node " strong.mono { (node) } " in " strong { (group) }
            ". It works once, and only until you open this page again." }
        pre #blob { (blob) }
        p { a #blob-download download=(format!("{group}-{node}.groupvpn")) href=(href) { "Download the blob" } }
        h2 { "On your node" }
        pre.mono { "vpn-control join \"$(cat " (group) "-" (node) ".groupvpn)\"\nvpn-control up" }
        p.muted { "The node keeps its key; certificates are renewed automatically before they expire." }
    }
}

/// `/groups/{name}/blob` once enrolled.
pub fn enrolled_page(m: &Member, until: Option<i64>) -> Markup {
    html! {
        p { "Your node " strong.mono { (m.node_name) } " is enrolled." }
        ul {
            li { "PeerId " span.mono { (m.peer_id.as_deref().unwrap_or("—")) } }
            li { "Address " span.mono { (m.address.as_deref().unwrap_or("—")) } }
            @if let Some(t) = until { li { "Certificate valid until " (when(t)) } }
        }
        p.muted { "The blob was used and cannot be shown again. Renewal happens without you." }
    }
}

/// `/groups/{name}/audit`.
pub fn audit_page(group: &str, entries: &[Entry]) -> Markup {
    html! {
        p { a href=(format!("/groups/{group}")) { "Back to " (group) } }
        div.table { table #audit {
            thead { tr { th { "When" } th { "Who" } th { "What" } th { "Details" } } }
            tbody {
                @for e in entries {
                    tr {
                        td data-label="When" { (human(&vpn_pki::fmt_time(std::time::UNIX_EPOCH + std::time::Duration::from_micros(u64::try_from(e.at).unwrap_or(0))))) }
                        td data-label="Who" { (e.actor) }
                        td data-label="What" { (e.action) }
                        td data-label="Details" { (e.detail) }
                    }
                }
            }
        } }
    }
}
