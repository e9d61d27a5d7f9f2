// Split-K without a second launch, shared by the tensor-core linear kernels: every block of an
// output tile writes its fp32 accumulators (slot-major, so stores and loads are coalesced) and the
// last block to take the tile's ticket sums the others into its own registers and goes on to the
// epilogue. Tickets return to zero, ready for the next launch (graph replays).
#pragma once
#include <cstdint>

namespace specq::cuda {

// Called by every thread of the block. `holds`: this thread has `values` (the slot-th of `slots`
// threads that take part). partial: [tiles][splits][kCount][slots] floats. Returns whether this
// block is the tile's last (its holders then have the sum of every split).
template <int kCount>
__device__ bool finish_split_k(float* partial, int* tickets, int tile, int split, int splits, bool holds, int slot,
                               int slots, float (&values)[kCount]) {
  __shared__ int is_last;
  float* mine = partial + (int64_t(tile) * splits + split) * kCount * slots;
  if (holds) {
#pragma unroll
    for (int e = 0; e < kCount; ++e) mine[e * slots + slot] = values[e];
  }
  __threadfence();  // partials visible device-wide before the ticket is taken
  __syncthreads();
  if (threadIdx.x == 0) is_last = atomicAdd(&tickets[tile], 1) == splits - 1;
  __syncthreads();
  if (!is_last) return false;
  __threadfence();
  if (holds) {
    for (int s = 0; s < splits; ++s) {
      if (s == split) continue;
      const float* other = partial + (int64_t(tile) * splits + s) * kCount * slots;
#pragma unroll
      for (int e = 0; e < kCount; ++e) values[e] += __ldcg(other + e * slots + slot);
    }
  }
  if (threadIdx.x == 0) tickets[tile] = 0;
  return true;
}

}  // namespace specq::cuda
