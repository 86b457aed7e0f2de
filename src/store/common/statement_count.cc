#include "store/common/statement_count.h"

namespace mmchat::store {
namespace {

thread_local uint64_t statements = 0;

}  // namespace

void CountStatement() { ++statements; }
uint64_t StatementsOnThisThread() { return statements; }

}  // namespace mmchat::store
