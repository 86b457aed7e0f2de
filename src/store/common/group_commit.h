// The group-commit message writer every store backend shares: appends and changes (edits,
// deletions, reactions) from any thread are queued; one writer thread takes whatever is queued (up
// to a batch) and hands it to the backend's CommitBatch, which commits it in one transaction; one
// answer thread then calls the callers back, batch after batch in commit order, while the writer
// already commits the next batch. Nobody waits on a commit of their own while others queue behind
// it.
//
// Thread-safe. Owned by the store; Stop() (or the destructor) drains: every accepted append
// is committed or failed, and answered, before it returns.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "common/status.h"
#include "domain/conversation.h"
#include "domain/message_change.h"
#include "metrics/registry.h"

namespace mmchat::store {

// One queued write, and what the backend did with it (the same alternative).
using Write = std::variant<domain::NewMessage, domain::MessageChange>;
using Written = std::variant<domain::StoredAppend, domain::StoredChange>;

class GroupCommitWriter {
 public:
  using Done = std::function<void(Result<Written>)>;
  // Commits `batch` in one transaction and returns one result per write, in order. When
  // the transaction fails, every result is that failure: nobody hears "ok" unless the commit
  // happened. `committed` says whether a transaction committed (for the batch counter).
  struct Committed {
    std::vector<Result<Written>> results;
    bool committed = false;
  };
  using CommitBatch = std::function<Committed(const std::vector<Write>& batch)>;
  // Upkeep the backend does on the writer's thread between batches (SQLite: merging the search
  // index so that deleted words leave it): one short step per call, returning whether more
  // remains. Called after a batch commits, as often as possible while nothing is queued and
  // at most every kTidyInterval under load, and to the end before Stop() returns.
  using Tidy = std::function<bool()>;
  static constexpr std::chrono::milliseconds kTidyInterval{100};

  // The largest number of appends committed in one transaction.
  static constexpr size_t kMaxBatch = 512;

  // Starts the writer and answer threads, named `<name>-writer` and `<name>-answers`.
  // `registry` (may be null) gets the writer's metrics: batch sizes, commit times, queue depth
  // and failed batches (docs/metrics.md).
  GroupCommitWriter(CommitBatch commit, const std::string& name, Tidy tidy = nullptr,
                    metrics::Registry* registry = nullptr);
  ~GroupCommitWriter();

  void Append(domain::NewMessage message, std::function<void(Result<domain::StoredAppend>)> done);
  void Change(domain::MessageChange change, std::function<void(Result<domain::StoredChange>)> done);
  // Writes everything queued, answers it, and stops the threads; later appends fail with
  // kUnavailable. Idempotent.
  void Stop();

  // Appends waiting for the writer to take them.
  size_t QueuedAppends();
  // Waits until every accepted append has been answered; false after `timeout`.
  bool WaitForAppends(std::chrono::milliseconds timeout);
  // Transactions of appends committed so far (for tests of the group commit).
  uint64_t CommittedBatches() const { return committed_batches_; }

 private:
  struct Pending {
    Write write;
    Done done;
  };
  void Enqueue(Write write, Done done);
  // A committed (or failed) batch waiting for its callers to be answered.
  struct Answered {
    std::vector<Done> callbacks;
    std::vector<Result<Written>> results;
  };

  void WriterLoop();
  void AnswerLoop();

  const CommitBatch commit_;
  const Tidy tidy_;

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<Pending> queue_;  // guarded by queue_mu_
  bool stopping_ = false;      // guarded by queue_mu_

  // At most this many batches wait for the answer thread; then the writer waits too, so that
  // a fan-out slower than the commits slows the commits instead of piling up.
  static constexpr size_t kMaxWaitingAnswers = 4;
  std::mutex answers_mu_;
  std::condition_variable answers_cv_;       // an answer is waiting, or the writer is done
  std::condition_variable answers_room_cv_;  // the answer thread took one
  std::deque<Answered> answers_;             // guarded by answers_mu_
  bool writer_done_ = false;                 // guarded by answers_mu_

  std::mutex pending_mu_;
  std::condition_variable answered_cv_;
  size_t pending_appends_ = 0;  // guarded by pending_mu_; accepted and not yet answered

  std::atomic<uint64_t> committed_batches_{0};
  // Null without a registry. Updated once per batch, and the depth once per write (a store).
  metrics::Histogram* batch_size_ = nullptr;
  metrics::Histogram* commit_seconds_ = nullptr;
  metrics::Gauge* queue_depth_ = nullptr;
  metrics::Counter* failed_batches_ = nullptr;
  std::once_flag stopped_;
  // Started last, joined first: the writer, then the answer thread after it.
  std::thread writer_thread_;
  std::thread answer_thread_;
};

}  // namespace mmchat::store
