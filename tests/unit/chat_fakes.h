// Shared helpers for the conversation and message unit tests: a recording event bus, a wait for
// the asynchronous append callback, and a fixture with the real SQLite store on a temp file.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <variant>
#include <vector>

#include "common/status.h"
#include "domain/conversation_service.h"
#include "domain/delivery_tracker.h"
#include "domain/events.h"
#include "domain/message_service.h"
#include "fakes.h"
#include "store/sqlite/sqlite_store.h"

namespace mmchat::test {

// Keeps every published event, in publish order; forwards to subscribers. Thread-safe.
class RecordingBus final : public domain::EventBus {
 public:
  void Publish(const domain::Event& event) override {
    std::vector<std::function<void(const domain::Event&)>> subs;
    {
      std::lock_guard lock(mu_);
      events_.push_back(event);
      subs = subscribers_;
    }
    for (const auto& s : subs) s(event);
  }
  using EventBus::Subscribe;
  void Subscribe(std::function<void(const domain::Event&)> subscriber, domain::Reach) override {
    std::lock_guard lock(mu_);
    subscribers_.push_back(std::move(subscriber));
  }

  std::vector<domain::Event> All() const {
    std::lock_guard lock(mu_);
    return events_;
  }
  // The events of one type, in publish order.
  template <typename T>
  std::vector<T> Of() const {
    std::lock_guard lock(mu_);
    std::vector<T> out;
    for (const auto& e : events_) {
      if (const T* t = std::get_if<T>(&e)) out.push_back(*t);
    }
    return out;
  }
  void Clear() {
    std::lock_guard lock(mu_);
    events_.clear();
  }

 private:
  mutable std::mutex mu_;
  std::vector<domain::Event> events_;                                   // guarded by mu_
  std::vector<std::function<void(const domain::Event&)>> subscribers_;  // guarded by mu_
};

// A callback for an asynchronous call (an append) and the future it fulfils.
template <typename T>
struct CallbackWaiter {
  std::shared_ptr<std::promise<Result<T>>> promise = std::make_shared<std::promise<Result<T>>>();
  std::future<Result<T>> future = promise->get_future();

  std::function<void(Result<T>)> Callback() {
    return [p = promise](Result<T> r) { p->set_value(std::move(r)); };
  }
  // The result; a failure (not a hang) if the callback never comes.
  Result<T> Get() {
    if (future.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
      ADD_FAILURE() << "callback never came";
      return Status::Internal("no callback");
    }
    return future.get();
  }
};
using AppendWaiter = CallbackWaiter<domain::AppendResult>;  // MessageService::Send
using StoredWaiter = CallbackWaiter<domain::StoredAppend>;  // ConversationStore::AppendMessage
using ChangedWaiter = CallbackWaiter<domain::Message>;      // MessageService::Edit, Delete, React
using StoredChangeWaiter =
    CallbackWaiter<domain::StoredChange>;  // ConversationStore::ChangeMessage

// The real SQLite store on a temporary file, the domain services over it, a recording bus and
// a hand-moved clock.
class ChatFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    store::sqlite::Options opts;
    opts.dsn = dir_.File("chat.db");
    auto s = store::sqlite::SqliteStore::Open(opts);
    ASSERT_TRUE(s.ok()) << s.status().message();
    store_ = std::move(s).value();
    cache_ = std::make_unique<domain::ConversationCache>(store_.get(), &bus_, clock_.Fn());
    convs_ = std::make_unique<domain::ConversationService>(domain::ConversationService::Deps{
        store_.get(), store_.get(), &bus_, &tracker_, cache_.get(), clock_.Fn()});
    msgs_ = MakeMessages(4000);
  }

  std::unique_ptr<domain::MessageService> MakeMessages(int max_len) {
    return std::make_unique<domain::MessageService>(domain::MessageService::Deps{
        store_.get(), convs_.get(), &bus_, &tracker_, cache_.get(), max_len, clock_.Fn()});
  }

  int64_t NewUser(const std::string& name) {
    auto u = store_->CreateUser(
        domain::NewUser{name, name + "@example.com", "hash-of-" + name, clock_.now});
    EXPECT_TRUE(u.ok()) << u.status().message();
    return u.ok() ? u->id : 0;
  }

  domain::Conversation Private(int64_t a, int64_t b) {
    auto r = convs_->CreatePrivate(a, b);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? r->first : domain::Conversation{};
  }

  domain::Conversation Group(int64_t creator, const std::vector<int64_t>& members,
                             const std::string& name = "team") {
    auto r = convs_->CreateGroup(creator, name, members);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? *r : domain::Conversation{};
  }

  Result<domain::AppendResult> TrySend(int64_t caller, int64_t conversation_id,
                                       const std::string& content,
                                       std::optional<std::string> client_id = std::nullopt) {
    AppendWaiter w;
    msgs_->Send(caller, domain::SendInput{conversation_id, content, std::move(client_id)},
                w.Callback());
    return w.Get();
  }

  domain::Message Send(int64_t caller, int64_t conversation_id, const std::string& content) {
    auto r = TrySend(caller, conversation_id, content);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? r->message : domain::Message{};
  }

  // Edits `id` as `caller` and returns the message after it.
  domain::Message Edit(int64_t caller, int64_t id, const std::string& content) {
    ChangedWaiter w;
    msgs_->Edit(caller, id, content, w.Callback());
    auto r = w.Get();
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? *r : domain::Message{};
  }

  domain::Conversation Stored(int64_t id) {
    auto r = store_->GetConversation(id);
    EXPECT_TRUE(r.ok() && r->has_value());
    return r.ok() && r->has_value() ? **r : domain::Conversation{};
  }

  TempDir dir_;
  FakeClock clock_;
  RecordingBus bus_;
  domain::DeliveryTracker tracker_;
  std::unique_ptr<store::sqlite::SqliteStore> store_;
  std::unique_ptr<domain::ConversationCache> cache_;
  std::unique_ptr<domain::ConversationService> convs_;
  std::unique_ptr<domain::MessageService> msgs_;
};

}  // namespace mmchat::test
