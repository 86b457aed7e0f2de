#include <gtest/gtest.h>  // filled in by the tests of this area
