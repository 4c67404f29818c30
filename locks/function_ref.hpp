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
  FunctionRef(F&& callable) noexcept  // NOLINT(google-explicit-constructor): used like a lambda
      : object_(const_cast<void*>(static_cast<const void*>(std::addressof(callable)))),
        call_([](void* object, Args... args) -> R {
          auto& target = *static_cast<std::remove_reference_t<F>*>(object);
          if constexpr (std::is_void_v<R>) {
            std::invoke(target, std::forward<Args>(args)...);
          } else {
            return std::invoke(target, std::forward<Args>(args)...);
          }
        }) {}

  R operator()(Args... args) const { return call_(object_, std::forward<Args>(args)...); }

 private:
  void* object_;
  R (*call_)(void*, Args...);
};

}  // namespace troupe
