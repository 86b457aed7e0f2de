#include "common/time.h"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>

namespace mmchat {

TimeMs SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

TimeMs NowMs() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string FormatRfc3339(TimeMs t) {
  std::string out(kRfc3339Length, '\0');
  FormatRfc3339(t, out.data());
  return out;
}

void FormatRfc3339(TimeMs t, char* out) {
  // Every message in a page carries a timestamp: civil-from-days arithmetic on
  // std::chrono and fixed-width digits, instead of gmtime_r and snprintf (a tenth of a
  // history page's time in perf).
  using namespace std::chrono;
  const sys_time<milliseconds> tp{milliseconds(t)};
  const auto day = floor<days>(tp);
  const year_month_day ymd{day};
  const hh_mm_ss<milliseconds> hms{tp - day};
  std::memcpy(out, "0000-00-00T00:00:00.000Z", kRfc3339Length);
  auto put = [out](size_t at, int width, long long value) {
    for (int i = width - 1; i >= 0; --i, value /= 10) {
      out[at + static_cast<size_t>(i)] = static_cast<char>('0' + value % 10);
    }
  };
  put(0, 4, static_cast<int>(ymd.year()));
  put(5, 2, static_cast<unsigned>(ymd.month()));
  put(8, 2, static_cast<unsigned>(ymd.day()));
  put(11, 2, hms.hours().count());
  put(14, 2, hms.minutes().count());
  put(17, 2, hms.seconds().count());
  put(20, 3, hms.subseconds().count());
}

}  // namespace mmchat
