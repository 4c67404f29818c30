#pragma once
// FunctionRef<R(Args...)>: a non-owning, non-allocating reference to a callable, two words.
// It must not outlive the callable it refers to: made for callbacks that run before the
// call taking them returns (parking-lot validate/before_sleep/unpark callbacks).
// Copying is cheap; calling is one indirect call. Thread safety: that of the callable.

#include <functional>
#include <memory>
#include <type_traits>
#include <utility>

namespace troupe {

template <class Signature>
class FunctionRef;

template <class R, class... Args>
class FunctionRef<R(Args...)> {
 public:
  template <class F>
    requires(!std::is_same_v<std::remove_cvref_t<F>, FunctionRef> &&
             std::is_invocable_r_v<R, F&, Args...>)
  FunctionRef(F&& callable) noexcept {  // NOLINT(google-explicit-constructor): used like a lambda
    using Target = std::remove_reference_t<F>;
    if constexpr (std::is_function_v<Target>) {  // a plain function: keep its address
      target_.function = reinterpret_cast<void (*)()>(&callable);
      call_ = [](Storage target, Args... args) -> R {
        return std::invoke(reinterpret_cast<Target*>(target.function),
                           std::forward<Args>(args)...);
      };
    } else {
      target_.object = const_cast<void*>(static_cast<const void*>(std::addressof(callable)));
      call_ = [](Storage target, Args... args) -> R {
        return std::invoke(*static_cast<Target*>(target.object), std::forward<Args>(args)...);
      };
    }
  }

  R operator()(Args... args) const { return call_(target_, std::forward<Args>(args)...); }

 private:
  union Storage {
    void* object;
    void (*function)();
  };
  Storage target_;
  R (*call_)(Storage, Args...);
};

}  // namespace troupe
