// dashboard_page.h — GET /dashboard: one self-contained HTML page (its CSS and script inline,
// nothing fetched but /v1/status from its own origin), embedded in the binary at build time from
// src/http/dashboard.html. It draws the system as the seed's diagram — Client → Load Balancer →
// API instances → Redis (the Lua function) → Response — from /v1/status, polled once a second
// (docs/status.md).
//
// Thread safety: a constant. Failure: none.
#pragma once

#include <string_view>

namespace fg::http {

std::string_view dashboard_page();

}  // namespace fg::http
