// CRC-32C (Castagnoli), the checksum of TensorFlow checkpoint bundles and LevelDB tables.
#pragma once

#include <cstddef>
#include <cstdint>

namespace musemo {

// CRC-32C of n bytes, continuing from crc (0 to start).
std::uint32_t crc32c(const unsigned char* data, std::size_t n, std::uint32_t crc = 0);

}  // namespace musemo
