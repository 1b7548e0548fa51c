#include <stdexcept>
#include <vector>

#include "device_model.cuh"

namespace hrnn::cuda {

DenseLayout::DenseLayout(const Params& P) : H(P.H) {
  P.d.for_each([&](const char* name, const std::vector<float>& v) {
    const std::string n(name);
    int64_t* slot = n == "Wg" ? &Wg : n == "Vg" ? &Vg : n == "bg" ? &bg : n == "W0" ? &W0 : n == "b0" ? &b0
                  : n == "Wsx" ? &Wsx : n == "Wsh" ? &Wsh : n == "bs" ? &bs : n == "Wux" ? &Wux
                  : n == "Wuh" ? &Wuh : n == "bu" ? &bu : n == "u0" ? &u0 : n == "rc" ? &rc : n == "rd" ? &rd
                  : n == "rV" ? &rV : nullptr;
    if (!slot) throw std::logic_error("DenseLayout: unknown dense block " + n);
    *slot = total;
    if (n == "rV") rV_size = static_cast<int64_t>(v.size());
    total += static_cast<int64_t>(v.size());
  });
}

DenseRefs::DenseRefs(const DenseLayout& L, float* p)
    : Wg(p + L.Wg), Vg(p + L.Vg), bg(p + L.bg), W0(p + L.W0), b0(p + L.b0), Wsx(p + L.Wsx), Wsh(p + L.Wsh),
      bs(p + L.bs), Wux(p + L.Wux), Wuh(p + L.Wuh), bu(p + L.bu), u0(p + L.u0), rc(p + L.rc), rd(p + L.rd),
      rV(p + L.rV) {}

void DeviceModel::upload(const Params& P, cudaStream_t s) {
  N = P.n_items, H = P.H, tied = P.tied;
  layout = DenseLayout(P);
  std::vector<float> packed;
  packed.reserve(layout.total);
  P.d.for_each([&](const char*, const std::vector<float>& v) { packed.insert(packed.end(), v.begin(), v.end()); });
  E.upload(P.E.data(), P.E.size(), s);
  if (!tied) O.upload(P.O.data(), P.O.size(), s);
  bo.upload(P.bo.data(), P.bo.size(), s);
  dense.upload(packed.data(), packed.size(), s);
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize (parameter upload)");  // `packed` dies here
}

void DeviceModel::download(Params& P, cudaStream_t s) const {
  if (P.n_items != N || P.H != H || P.tied != tied) throw std::logic_error("DeviceModel::download: other sizes");
  std::vector<float> packed(layout.total);
  E.download(P.E.data(), P.E.size(), s);
  if (!tied) O.download(P.O.data(), P.O.size(), s);
  bo.download(P.bo.data(), P.bo.size(), s);
  dense.download(packed.data(), packed.size(), s);
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize (parameter download)");
  size_t at = 0;
  P.d.for_each([&](const char*, std::vector<float>& v) {
    std::copy(packed.begin() + at, packed.begin() + at + v.size(), v.begin());
    at += v.size();
  });
}

}  // namespace hrnn::cuda
