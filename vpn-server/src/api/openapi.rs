//! OpenAPI 3.1 description of the JSON API.

use serde_json::{json, Value};

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

/// The document served at `/api/v1/openapi.json`.
pub fn document() -> Value {
    let enroll_ok = json!({
        "description": "The signed member certificate and the group configuration",
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/EnrollResponse" } } }
    });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "GroupVPN group server API",
            "version": "1",
            "description": "Enrolment, renewal, CA and CRL distribution for GroupVPN nodes. \
                Errors are {\"error\": \"...\"}. Request bodies are limited to 64 KiB."
        },
        "paths": {
            "/api/v1/accounts": { "post": {
                "summary": "Create an account",
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "additionalProperties": false,
                    "required": ["username", "password"],
                    "properties": {
                        "username": { "type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$" },
                        "password": { "type": "string", "minLength": 8, "maxLength": 1024 }
                    } } } } },
                "responses": {
                    "201": { "description": "Created" },
                    "400": error_response("Invalid username or password"),
                    "409": error_response("Username taken"),
                    "413": error_response("Body larger than 64 KiB"),
                    "429": error_response("Too many registrations from this address")
                }
            } },
            "/api/v1/enroll": { "post": {
                "summary": "Enrol a node: blob secret + CSR -> certificate",
                "description": "The secret comes from the member's configuration blob and is \
                    single-use. The CSR (PKCS#10, Ed25519, as `vpn-control cert request` writes \
                    it) must be self-signed by the node key. The server allocates a fixed \
                    address from the group range.",
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "additionalProperties": false,
                    "required": ["secret", "csr_pem"],
                    "properties": {
                        "secret": { "type": "string" },
                        "csr_pem": { "type": "string" }
                    } } } } },
                "responses": {
                    "200": enroll_ok.clone(),
                    "400": error_response("Malformed JSON or bad CSR"),
                    "401": error_response("Unknown secret"),
                    "403": error_response("Member revoked"),
                    "409": error_response("Secret already used, or the PeerId is enrolled as another member"),
                    "413": error_response("Body larger than 64 KiB"),
                    "503": error_response("Address range exhausted")
                }
            } },
            "/api/v1/renew": { "post": {
                "summary": "Renew the certificate of an enrolled key",
                "description": "Allowed when the CSR's key belongs to an enrolled member whose \
                    newest certificate is current and not revoked. Same name, address and roles; \
                    fresh validity. `group` is needed only when the key is enrolled in several groups.",
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "additionalProperties": false,
                    "required": ["csr_pem"],
                    "properties": {
                        "csr_pem": { "type": "string" },
                        "group": { "type": "string" }
                    } } } } },
                "responses": {
                    "200": enroll_ok,
                    "400": error_response("Malformed JSON or bad CSR"),
                    "403": error_response("Not an enrolled member with a current certificate"),
                    "404": error_response("No such group"),
                    "413": error_response("Body larger than 64 KiB")
                }
            } },
            "/api/v1/groups/{group}/ca": { "get": {
                "summary": "The group CA certificate",
                "parameters": [{ "name": "group", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": {
                    "200": { "description": "CA", "content": { "application/json": { "schema": {
                        "type": "object", "required": ["ca_pem"],
                        "properties": { "ca_pem": { "type": "string" } } } } } },
                    "404": error_response("No such group")
                }
            } },
            "/api/v1/groups/{group}/crl": { "get": {
                "summary": "The group's current CRL (signed by the group CA)",
                "description": "Re-signed when more than half of its validity has passed and on every revocation.",
                "parameters": [{ "name": "group", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": {
                    "200": { "description": "CRL", "content": { "application/json": { "schema": {
                        "type": "object", "required": ["crl_pem", "number", "this_update", "next_update"],
                        "properties": {
                            "crl_pem": { "type": "string" },
                            "number": { "type": "integer" },
                            "this_update": { "type": "string", "format": "date-time" },
                            "next_update": { "type": "string", "format": "date-time" }
                        } } } } },
                    "404": error_response("No such group")
                }
            } },
            "/api/v1/openapi.json": { "get": {
                "summary": "This document",
                "responses": { "200": { "description": "OpenAPI 3.1" } }
            } },
            "/healthz": { "get": {
                "summary": "Liveness",
                "responses": { "200": { "description": "ok", "content": { "text/plain": {} } } }
            } }
        },
        "components": { "schemas": {
            "Error": { "type": "object", "required": ["error"],
                "properties": { "error": { "type": "string" } } },
            "GroupConfig": { "type": "object",
                "required": ["name", "ranges", "bootstrap", "public_kad_protocol"],
                "properties": {
                    "name": { "type": "string" },
                    "ranges": { "type": "array", "items": { "type": "string" } },
                    "bootstrap": { "type": "array", "items": { "type": "string" } },
                    "public_kad_protocol": { "type": "string" }
                } },
            "EnrollResponse": { "type": "object",
                "required": ["certificate_pem", "ca_pem", "crl_pem", "group", "renew_after", "not_after"],
                "properties": {
                    "certificate_pem": { "type": "string" },
                    "ca_pem": { "type": "string" },
                    "crl_pem": { "type": "string" },
                    "group": { "$ref": "#/components/schemas/GroupConfig" },
                    "renew_after": { "type": "string", "format": "date-time" },
                    "not_after": { "type": "string", "format": "date-time" }
                } }
        } }
    })
}
