#include "store/common/group_commit.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <utility>

#include "common/utf8.h"

namespace mmchat::store {

GroupCommitWriter::GroupCommitWriter(CommitBatch commit, const std::string& name, Tidy tidy,
                                     metrics::Registry* registry)
    : commit_(std::move(commit)), tidy_(std::move(tidy)) {
  if (registry != nullptr) {
    batch_size_ = registry->GetHistogram(
        "mmchat_writer_batch_size",
        "Writes (messages, edits, deletions, reactions) per message-writer transaction.", "",
        {1, 2, 4, 8, 16, 32, 64, 128, 256, 512});
    commit_seconds_ =
        registry->GetHistogram("mmchat_writer_commit_duration_seconds",
                               "Time the message writer took to write and commit one batch.", "",
                               {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                0.1, 0.25, 0.5, 1, 2.5, 5, 10});
    queue_depth_ = registry->GetGauge("mmchat_writer_queue_depth",
                                      "Writes waiting for the message writer to take them.");
    failed_batches_ = registry->GetCounter(
        "mmchat_writer_failed_batches_total",
        "Message-writer batches whose transaction failed (each write answered with the error).");
  }
  // Thread names (at most 15 characters) for top -H and perf.
  writer_thread_ = std::thread([this, n = (name + "-writer").substr(0, 15)] {
    pthread_setname_np(pthread_self(), n.c_str());
    WriterLoop();
  });
  answer_thread_ = std::thread([this, n = (name + "-answers").substr(0, 15)] {
    pthread_setname_np(pthread_self(), n.c_str());
    AnswerLoop();
  });
}

GroupCommitWriter::~GroupCommitWriter() { Stop(); }

void GroupCommitWriter::Stop() {
  std::call_once(stopped_, [this] {
    {
      // The writer drains the queue before it stops: an accepted append is never dropped.
      std::lock_guard lock(queue_mu_);
      stopping_ = true;
    }
    queue_cv_.notify_all();
    writer_thread_.join();
    {
      std::lock_guard lock(answers_mu_);
      writer_done_ = true;
    }
    answers_cv_.notify_all();
    answer_thread_.join();  // every accepted append has been answered
  });
}

namespace {

// The backend's result as the caller's type (a backend that answered with the other one is a
// bug, answered as a database error).
template <typename T>
GroupCommitWriter::Done Expecting(std::function<void(Result<T>)> done) {
  return [done = std::move(done)](Result<Written> r) {
    if (!r.ok()) return done(r.status());
    if (auto* t = std::get_if<T>(&*r)) return done(std::move(*t));
    done(Status::Unavailable("database error"));
  };
}

}  // namespace

void GroupCommitWriter::Append(domain::NewMessage message,
                               std::function<void(Result<domain::StoredAppend>)> done) {
  Enqueue(std::move(message), Expecting(std::move(done)));
}

void GroupCommitWriter::Change(domain::MessageChange change,
                               std::function<void(Result<domain::StoredChange>)> done) {
  Enqueue(std::move(change), Expecting(std::move(done)));
}

void GroupCommitWriter::Enqueue(Write write, Done done) {
  {
    std::lock_guard lock(queue_mu_);
    if (!stopping_) {
      {
        std::lock_guard pending(pending_mu_);
        ++pending_appends_;
      }
      queue_.push_back({std::move(write), std::move(done)});
      if (queue_depth_ != nullptr) queue_depth_->Set(static_cast<int64_t>(queue_.size()));
      queue_cv_.notify_one();
      return;
    }
  }
  // The writer has drained and stopped: nothing queued now would ever be answered.
  done(Status::Unavailable("the server is shutting down"));
}

bool GroupCommitWriter::WaitForAppends(std::chrono::milliseconds timeout) {
  std::unique_lock lock(pending_mu_);
  return answered_cv_.wait_for(lock, timeout, [this] { return pending_appends_ == 0; });
}

size_t GroupCommitWriter::QueuedAppends() {
  std::lock_guard lock(queue_mu_);
  return queue_.size();
}

void GroupCommitWriter::WriterLoop() {
  bool tidying = false;  // a batch committed since the backend last said its upkeep was done
  auto last_tidy = std::chrono::steady_clock::now();
  auto tidy_step = [&] {
    tidying = tidy_ && tidy_();
    last_tidy = std::chrono::steady_clock::now();
  };
  for (;;) {
    std::vector<Write> batch;
    Answered answered;
    {
      std::unique_lock lock(queue_mu_);
      // Idle (or stopping with nothing left to write): the upkeep runs until work arrives.
      while (tidying && queue_.empty()) {
        lock.unlock();
        tidy_step();
        lock.lock();
      }
      queue_cv_.wait(lock, [this] { return !queue_.empty() || stopping_; });
      if (queue_.empty()) return;  // stopping, and everything accepted was written
      // No waiting for more: while one batch commits, the next one gathers by itself.
      while (!queue_.empty() && batch.size() < kMaxBatch) {
        batch.push_back(std::move(queue_.front().write));
        answered.callbacks.push_back(std::move(queue_.front().done));
        queue_.pop_front();
      }
      if (queue_depth_ != nullptr) queue_depth_->Set(static_cast<int64_t>(queue_.size()));
    }
    const auto commit_start = std::chrono::steady_clock::now();
    Committed c = commit_(batch);
    if (batch_size_ != nullptr) {
      const std::chrono::duration<double> took = std::chrono::steady_clock::now() - commit_start;
      commit_seconds_->Observe(took.count());
      batch_size_->Observe(static_cast<double>(batch.size()));
      if (!c.committed) failed_batches_->Inc();
    }
    if (c.committed) ++committed_batches_;
    tidying = tidying || c.committed;
    // A backend that answered short is a bug; still, every caller must hear something.
    c.results.resize(batch.size(), Status::Unavailable("database error"));
    answered.results = std::move(c.results);
    {
      std::unique_lock lock(answers_mu_);
      answers_room_cv_.wait(lock, [this] { return answers_.size() < kMaxWaitingAnswers; });
      answers_.push_back(std::move(answered));
    }
    answers_cv_.notify_one();
    // Under load, a step now and then, after the batch's callers have their answers.
    if (tidying && std::chrono::steady_clock::now() - last_tidy >= kTidyInterval) tidy_step();
  }
}

void GroupCommitWriter::AnswerLoop() {
  for (;;) {
    Answered a;
    {
      std::unique_lock lock(answers_mu_);
      answers_cv_.wait(lock, [this] { return !answers_.empty() || writer_done_; });
      if (answers_.empty()) return;  // the writer stopped and everything was answered
      a = std::move(answers_.front());
      answers_.pop_front();
    }
    answers_room_cv_.notify_one();
    for (size_t i = 0; i < a.callbacks.size(); ++i) {
      // One failing callback must not keep the others from their answers, nor end the thread.
      try {
        a.callbacks[i](std::move(a.results[i]));
      } catch (const std::exception& e) {
        spdlog::error("message append callback threw: {}", LogSafe(e.what()));  // may quote input
      }
    }
    {
      std::lock_guard lock(pending_mu_);
      pending_appends_ -= a.callbacks.size();
    }
    answered_cv_.notify_all();
  }
}

}  // namespace mmchat::store
