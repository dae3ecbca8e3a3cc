# Warning and sanitizer flag sets applied to every bnorm target.
function(bnorm_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wconversion
                                           -Wno-sign-conversion -Wnon-virtual-dtor)
  if(BNORM_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

if(BNORM_SANITIZE)
  add_compile_options(-fsanitize=${BNORM_SANITIZE} -fno-sanitize-recover=all -fno-omit-frame-pointer)
  add_link_options(-fsanitize=${BNORM_SANITIZE})
endif()
