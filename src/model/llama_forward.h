// The Llama-family forward pass, written once for every backend and precision.
// A backend supplies the buffers and ops; which kernel runs is its business (the weight format
// and the device decide). Residual stream: `x` holds the sum so far; each sub-block writes its
// output to `delta`, and the next norm folds it in (add_rmsnorm), so the add costs no extra pass.
#pragma once

namespace specq {

enum class NormSlot { Attention, Ffn };

// Backend requirements (B):
//   using Act;  Act& act(ActName)
//   void embed(Act& out, int n)                           ids come from the request the backend holds
//   void add_rmsnorm(Act& x, const Act* delta, NormRef, Act& out, int n)    x += delta; out = norm(x)
//   void linear(LinearRef, const Act& in, Act& out, int n)                   out = in W^T (+ bias)
//   void rope_store_kv(int layer, Act& qkv, int n)        rotate q,k in place, write k,v to the cache
//   void attention(int layer, const Act& qkv, Act& out, int n)
//   void swiglu(const Act& gate_up, Act& out, int n)      out = silu(gate) * up
//   void lm_head(const Act& xn, int n)                    logits (and argmax) of the requested rows
//   NormRef norm(int layer, NormSlot), final_norm(); LinearRef qkv(l), wo(l), gate_up(l), down(l)
template <class B>
void llama_forward(B& b, int num_layers, int n) {
  auto& x = b.act_x();
  auto& xn = b.act_xn();
  auto& qkv = b.act_qkv();
  auto& attn = b.act_attn();
  auto& delta = b.act_delta();
  auto& gate_up = b.act_gate_up();
  auto& ffn = b.act_ffn();
  b.embed(x, n);
  for (int l = 0; l < num_layers; ++l) {
    b.add_rmsnorm(x, l == 0 ? nullptr : &delta, b.norm(l, NormSlot::Attention), xn, n);
    b.linear(b.qkv(l), xn, qkv, n);
    b.rope_store_kv(l, qkv, n);
    b.attention(l, qkv, attn, n);
    b.linear(b.wo(l), attn, delta, n);
    b.add_rmsnorm(x, &delta, b.norm(l, NormSlot::Ffn), xn, n);
    b.linear(b.gate_up(l), xn, gate_up, n);
    b.swiglu(gate_up, ffn, n);
    b.linear(b.down(l), ffn, delta, n);
  }
  b.add_rmsnorm(x, &delta, b.final_norm(), xn, n);  // xn now holds the final hidden states
  b.lm_head(xn, n);
}

}  // namespace specq
