// Counts the SQL statements a store runs, per thread, so that tests can check how many
// queries an operation costs (the conversation list must not grow with the number of
// conversations). Cheap: one thread-local increment per statement.
#pragma once

#include <cstdint>

namespace mmchat::store {

// Called by a backend for each statement it sends to its database.
void CountStatement();
// Statements run by the calling thread so far.
uint64_t StatementsOnThisThread();

}  // namespace mmchat::store
