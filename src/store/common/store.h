// What app/ holds of whichever store backend configuration chose: every interface the
// domain needs, plus the message writer that a graceful stop waits for. Thread-safe.
#pragma once

#include "domain/conversation_store.h"
#include "domain/store.h"
#include "domain/upload_store.h"
#include "store/common/group_commit.h"

namespace mmchat::store {

class Store : public domain::UserStore,
              public domain::CodeStore,
              public domain::SettingsStore,
              public domain::StoreHealth,
              public domain::ConversationStore,
              public domain::UploadStore {
 public:
  // The group-commit writer of AppendMessage: WaitForAppends before the connections that
  // carry the answers close; tests count its batches.
  virtual GroupCommitWriter& writer() = 0;
};

}  // namespace mmchat::store
