// Route tables of each API area. Each function adds its routes to the router; the handlers
// translate JSON to domain calls and back, nothing more.
#pragma once

#include <functional>

#include "domain/account_service.h"
#include "domain/conversation_service.h"
#include "domain/events.h"
#include "domain/message_service.h"
#include "domain/store.h"
#include "domain/upload_service.h"
#include "domain/user_service.h"
#include "http/router.h"
#include "metrics/registry.h"

namespace mmchat::http {

void AddAccountRoutes(Router& router, domain::AccountService* accounts);
void AddUserRoutes(Router& router, domain::UserService* users);
void AddConversationRoutes(Router& router, domain::ConversationService* conversations);
void AddMessageRoutes(Router& router, domain::MessageService* messages);
void AddUploadRoutes(Router& router, domain::UploadService* uploads);
// The web client (web/): `/` and `/web/<file>`.
void AddWebRoutes(Router& router);
// `bus` is the cluster's bus, reported by /readyz; null for one process.
void AddOpsRoutes(Router& router, domain::StoreHealth* health, const metrics::Registry* registry,
                  const domain::BusHealth* bus);

}  // namespace mmchat::http
